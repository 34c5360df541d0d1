"""The node agent: pure planner, buildout runner, supervisord controller, layout, loop.

Depends on core and slapfed.client; never on the master's packages.
"""
