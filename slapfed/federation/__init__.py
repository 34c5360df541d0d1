"""Federation: routing (pure, ``routing``), peer credentials (``peers``) and the
forwarder working through the forward table (``forwarder``).

Import the submodule you need; this package imports nothing by itself so that the pure
routing core stays free of I/O.
"""
