"""The operator's dashboard behind ``slapfed ui``: a local web server that shows the
federation as its user sees it, calling the master with the user's own identity.

guard decides who may talk to the local server (pure), view turns the master's answers
into what a page shows (pure), server is the Flask adapter with its poller.
"""
