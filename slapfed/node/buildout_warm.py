"""Imported by the buildout fork server when it starts: zc.buildout and the slapfed
recipes loaded and one tiny buildout run, so that the children it forks (one per
buildout run as a partition user) start warm. Importing it anywhere else only costs
that warm-up once.
"""
from .buildout import ForkRunner

ForkRunner().warm_up()
