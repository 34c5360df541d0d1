"""The certificate authority of a master: identities in X509, issuing and verification, policy.

Depends on slapfed.core and cryptography only; never on the model, store, web or CLI layers.
"""
