"""Federation's pure core: routing (``routing``) decides whether a request is served
here or delegated to a peer.

Depends on core only: no I/O, no model, no services. Talking to peers lives in
slapfed.peering; the federation use cases in slapfed.services.federation.
"""
