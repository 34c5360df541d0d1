"""Talking to peer masters: pairing and the peer client (``peers``), and the forwarder
working through the forward table (``forwarder``).

Depends on services (the federation use cases it drives), slapfed.client and slapfed.enrol;
it sits above the use cases and below the web layer, which starts the forwarder. Import the
submodule you need.
"""
