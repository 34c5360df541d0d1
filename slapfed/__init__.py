"""slapfed: a federated, recursive cloud orchestrator.

Owns nothing but the package version; every layer lives in a subpackage.
"""
__version__ = "0.1.0"
