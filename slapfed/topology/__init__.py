"""The federation's topology: locality relations, topology files and the networkx graph.

Pure code (no I/O but reading the topology files the caller names); depends on core.
"""
