"""The slapfed command line (click): thin commands over the client and the services.

May import every other layer; nothing imports it.
"""
