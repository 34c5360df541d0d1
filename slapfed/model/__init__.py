"""Persistent model of a master: the App root, computers, partitions, releases, instances.

Depends on core (states) plus persistent/BTrees only. Methods keep invariants and
never commit; rendering to JSON lives in the service layer, not here.
"""
from .app import App, ROOT_KEY
from .computer import Computer, Partition, SoftwareRelease
from .federation import Forward, Peer
from .instance import Instance

__all__ = ["App", "ROOT_KEY", "Computer", "Partition", "SoftwareRelease", "Instance", "Peer",
           "Forward"]
