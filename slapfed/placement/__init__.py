"""Placement: choose a computer and partition for an instance from a read-only snapshot.

Pure (depends on core and topology.locality only): no I/O, no ZODB, no Flask. Filter and
score plugins run in one pipeline whose order and weights are data (pipeline.DEFAULT_CONFIG).
"""
from .context import Anchor, Context, PlacementRequest
from .pipeline import DEFAULT, DEFAULT_CONFIG, Attempt, Decision, PipelineConfig, Refusal, decide
from .snapshot import ComputerView, MutableSnapshot, Snapshot, build

__all__ = ["Anchor", "Context", "PlacementRequest", "DEFAULT", "DEFAULT_CONFIG", "Attempt",
           "Decision", "PipelineConfig", "Refusal", "decide", "ComputerView",
           "MutableSnapshot", "Snapshot", "build"]
