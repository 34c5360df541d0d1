"""Run the stock ``slapos`` command (slapos.core 1.26.1) on Python 3.11.

slapos.core calls ``importlib.resources.files(__name__)`` from plain modules
(slapos.grid.SlapObject, slapos.grid.slapgrid, ...), which Python accepts only from
3.12 on. This wrapper makes ``files`` of a module name mean its package's files, then
hands the command line to slapos' own entry point. Usage: python run_slapos.py node ...
"""
import importlib
import importlib.resources
import sys

_files = importlib.resources.files


def _files_of_package(anchor=None):
    if isinstance(anchor, str):
        module = importlib.import_module(anchor)
        if not hasattr(module, "__path__"):
            anchor = anchor.rpartition(".")[0]
    return _files(anchor)


importlib.resources.files = _files_of_package

if __name__ == "__main__":
    from slapos.cli.entry import main
    sys.exit(main(sys.argv[1:]))
