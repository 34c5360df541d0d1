"""Every module imports on its own in a fresh interpreter, and the layers import downward only."""
import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import slapfed

PKG = Path(slapfed.__file__).parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(PKG)], "slapfed."))

# layer -> layers it must never import (pure cores stay pure; master and node stay apart)
FORBIDDEN = {
    "slapfed.core": ("slapfed.model", "slapfed.store", "slapfed.services", "slapfed.master",
                     "slapfed.node", "slapfed.cli", "slapfed.client", "flask", "ZODB",
                     "persistent", "BTrees", "requests"),
    "slapfed.placement": ("slapfed.model", "slapfed.store", "slapfed.services", "slapfed.master",
                          "slapfed.node", "slapfed.cli", "flask", "ZODB", "requests"),
    "slapfed.node.plan": ("slapfed.master", "slapfed.model", "slapfed.store", "requests",
                          "supervisor", "zc.buildout", "flask", "ZODB", "subprocess"),
    "slapfed.node.restarts": ("slapfed.master", "slapfed.model", "slapfed.store", "requests",
                              "supervisor", "zc.buildout", "flask", "ZODB", "subprocess",
                              "os", "json"),
    "slapfed.federation.routing": ("slapfed.model", "slapfed.store", "slapfed.services",
                                   "slapfed.master", "slapfed.node", "slapfed.cli", "flask",
                                   "ZODB", "persistent", "requests"),
    "slapfed.federation": ("slapfed.master", "slapfed.node", "slapfed.cli", "flask"),
    "slapfed.master": ("slapfed.node", "slapfed.cli"),
    "slapfed.services": ("slapfed.master", "slapfed.node", "slapfed.cli", "flask"),
    "slapfed.model": ("slapfed.services", "slapfed.master", "slapfed.node", "slapfed.cli", "flask"),
    "slapfed.node": ("slapfed.master", "slapfed.services", "slapfed.model", "slapfed.store",
                     "slapfed.cli", "flask"),
}


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    pkg = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + (1 if path.name == "__init__.py" else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_downward_only(layer):
    root = PKG.parent.joinpath(*layer.split("."))
    files = [root.with_suffix(".py")] if root.with_suffix(".py").exists() else sorted(root.rglob("*.py"))
    bad = []
    for f in files:
        for name in _imports(f):
            for forbidden in FORBIDDEN[layer]:
                if name == forbidden or name.startswith(forbidden + "."):
                    bad.append(f"{f.relative_to(PKG.parent)} imports {name}")
    assert not bad, "\n".join(bad)
