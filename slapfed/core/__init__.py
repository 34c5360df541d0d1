"""Core vocabulary shared by every layer: typed errors, state names, wire types.

Depends on nothing but the standard library.
"""
