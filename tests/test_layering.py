"""Every module imports on its own in a fresh interpreter; each layer imports only the
layers its contract allows (an allow-list, no exceptions); modules never import each
other in a circle; and the use cases keep no state of their own between calls."""
import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import slapfed

PKG = Path(slapfed.__file__).parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(PKG)], "slapfed."))

# Modules of the standard library that decide without acting (no files, processes,
# sockets, threads, clock or environment): what the pure cores may use.
PURE_STDLIB = frozenset({
    "__future__", "base64", "binascii", "bisect", "collections", "dataclasses", "enum",
    "fnmatch", "functools", "hashlib", "ipaddress", "itertools", "json", "math", "re",
    "string", "types", "typing",
})
ANY_STDLIB = None

# layer -> (slapfed layers it may import, other distributions it may import, the
# standard library modules it may import). A layer is a package or a module of slapfed;
# the most specific one containing a module applies. Reading down: imports go from the
# web and command line, through the adapters and use cases, down to the pure cores.
CONTRACT = {
    # pure cores
    "slapfed.core": ((), (), PURE_STDLIB),
    # the wire types: declared with pydantic (schemas, validation), pure all the same
    "slapfed.core.wire": (("slapfed.core",), ("pydantic", "pydantic_core"), PURE_STDLIB),
    "slapfed.core.answers": (("slapfed.core",), ("pydantic",), PURE_STDLIB),
    # SLAP's marshal documents: expat parses a document held in memory (no I/O)
    "slapfed.core.marshal": (("slapfed.core",), (), PURE_STDLIB | {"xml"}),
    # SlapOS usage journals (useComputer): expat parses a document held in memory
    "slapfed.core.slap_usage": (("slapfed.core",), (), PURE_STDLIB | {"xml"}),
    "slapfed.core.accounting": (("slapfed.core",), (), PURE_STDLIB | {"decimal"}),
    "slapfed.placement": (("slapfed.core", "slapfed.topology.locality"), (), PURE_STDLIB),
    "slapfed.federation": (("slapfed.core",), (), PURE_STDLIB),
    "slapfed.node.plan": (("slapfed.core",), (), PURE_STDLIB),
    "slapfed.node.restarts": (("slapfed.core",), (), PURE_STDLIB - {"json"}),
    # values and their files
    "slapfed.ca": (("slapfed.core",), ("cryptography",), ANY_STDLIB),
    "slapfed.topology": (("slapfed.core",), ("networkx", "PIL"), ANY_STDLIB),
    "slapfed.topology.locality": (("slapfed.core",), (), PURE_STDLIB),
    "slapfed.procs": ((), (), ANY_STDLIB),
    "slapfed.logs": ((), (), ANY_STDLIB),        # logging set-up for operators
    "slapfed.locks": ((), (), ANY_STDLIB),       # electing one process per data directory
    "slapfed.metrics": ((), ("prometheus_client",), ANY_STDLIB),   # Prometheus text format
    # persistence
    "slapfed.model": (("slapfed.core",), ("BTrees", "persistent"), ANY_STDLIB),
    "slapfed.store": (("slapfed.core", "slapfed.model", "slapfed.procs", "slapfed.topology",
                       "slapfed.locks"),
                      ("ZODB", "ZEO", "transaction", "zc", "BTrees"), ANY_STDLIB),
    # use cases (no HTTP, no Flask)
    "slapfed.services": (("slapfed.core", "slapfed.ca", "slapfed.model", "slapfed.placement",
                          "slapfed.federation"),
                         ("ZODB", "transaction", "BTrees", "persistent"), ANY_STDLIB),
    # adapters
    "slapfed.client": (("slapfed.core", "slapfed.ca", "slapfed.transport"), (), ANY_STDLIB),
    # HTTP/1.1 for the client: the standard library (and certifi's CA bundle) only
    "slapfed.transport": (("slapfed",), ("certifi",), ANY_STDLIB),
    "slapfed.enrol": (("slapfed.core", "slapfed.ca", "slapfed.client"), ("cryptography",),
                      ANY_STDLIB),
    "slapfed.peering": (("slapfed.core", "slapfed.services", "slapfed.client",
                         "slapfed.enrol", "slapfed.logs", "slapfed.locks"), (), ANY_STDLIB),
    "slapfed.replication": (("slapfed.core", "slapfed.ca", "slapfed.client", "slapfed.enrol",
                             "slapfed.store", "slapfed.services", "slapfed.logs",
                             "slapfed.locks"),
                            ("ZODB", "transaction"), ANY_STDLIB),
    "slapfed.node": (("slapfed.core", "slapfed.ca", "slapfed.client", "slapfed.procs",
                      "slapfed.logs", "slapfed.metrics"),
                     ("supervisor", "zc", "cryptography"), ANY_STDLIB),
    "slapfed.samples": (("slapfed.core",), ("aiohttp", "yarl"), ANY_STDLIB),
    "slapfed.recipe": (("slapfed.core",), ("zc",), ANY_STDLIB),
    # sealing and opening secrets as a client of a master (the CLI, a master's recipe)
    "slapfed.sealed_values": (("slapfed.core", "slapfed.ca"), (), ANY_STDLIB),
    "slapfed.recipe_cdn": (("slapfed.core", "slapfed.recipe", "slapfed.samples"), ("zc",),
                           ANY_STDLIB),
    "slapfed.recipe_master": (("slapfed.core", "slapfed.ca", "slapfed.client",
                               "slapfed.recipe", "slapfed.sealed_values"), ("zc",), ANY_STDLIB),
    # the web layer (master and node never import each other)
    "slapfed.master": (("slapfed", "slapfed.core", "slapfed.ca", "slapfed.topology",
                        "slapfed.model", "slapfed.store", "slapfed.services",
                        "slapfed.peering", "slapfed.replication", "slapfed.logs",
                        "slapfed.metrics"),
                       ("flask", "werkzeug", "gunicorn"), ANY_STDLIB),
    # the operator's dashboard: a local web server calling the master as its user
    # (it opens the values sealed to its user with the user's key, as the CLI does)
    "slapfed.ui": (("slapfed.client", "slapfed.core", "slapfed.topology", "slapfed.ca",
                    "slapfed.sealed_values"),
                   ("flask", "werkzeug", "jinja2"), ANY_STDLIB),
    "slapfed.ui.guard": (("slapfed.core",), (), ANY_STDLIB),
    # the command line
    "slapfed.cli": (("slapfed", "slapfed.core", "slapfed.ca", "slapfed.client", "slapfed.enrol",
                     "slapfed.master", "slapfed.node", "slapfed.procs", "slapfed.store",
                     "slapfed.replication", "slapfed.transport",
                     "slapfed.topology", "slapfed.logs", "slapfed.metrics", "slapfed.ui",
                     "slapfed.sealed_values"),
                    ("click",), ANY_STDLIB),
    "slapfed": ((), (), PURE_STDLIB),
}


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (``from a import b`` gives a and a.b)."""
    tree = ast.parse(path.read_text())
    mod = _name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            if target.startswith("slapfed"):
                names.update(f"{target}.{a.name}" for a in node.names)
    return names


def _within(name: str, layer: str) -> bool:
    """Whether module ``name`` belongs to ``layer`` ("slapfed" alone: the package itself)."""
    return name == layer or (layer != "slapfed" and name.startswith(layer + "."))


def layer_of(module: str) -> str:
    """The most specific layer of CONTRACT containing ``module``."""
    return max((layer for layer in CONTRACT if _within(module, layer) or layer == "slapfed"),
               key=len)


SOURCES = sorted(PKG.rglob("*.py"))


def refusals(mod: str, imported: set[str]) -> list[str]:
    """What ``mod`` imports (``imported``) that the contract of its layer does not allow."""
    layer = layer_of(mod)
    allowed, external, stdlib = CONTRACT[layer]
    bad = []
    for name in sorted(imported):
        top = name.split(".")[0]
        if top == "slapfed":
            if _within(name, layer) or mod.startswith(name + "."):
                continue        # its own layer, or a package above it (imported first anyway)
            if name in _modules_and_packages() and not any(_within(name, a) for a in allowed):
                bad.append(f"{mod} ({layer}) imports {name}")
        elif top in sys.stdlib_module_names:
            if stdlib is not None and top not in stdlib:
                bad.append(f"{mod} ({layer}) imports {name}: not a pure standard module")
        elif top not in external:
            bad.append(f"{mod} ({layer}) imports {name}: not among its libraries")
    return bad


def _modules_and_packages() -> set[str]:
    return {_name(p) for p in SOURCES}


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_each_module_imports_only_what_its_layer_allows(path):
    bad = refusals(_name(path), _imports(path))
    assert not bad, "\n".join(bad)


def test_every_layer_of_the_contract_exists_and_may_import_only_known_layers():
    known = _modules_and_packages()
    assert set(CONTRACT) <= known
    for layer, (allowed, _external, _stdlib) in CONTRACT.items():
        assert set(allowed) <= known, layer


@pytest.mark.parametrize("mod, imported, refused", [
    ("slapfed.core.wire", {"slapfed.services.tx"}, True),
    ("slapfed.core.wire", {"flask"}, True),
    ("slapfed.core.wire", {"os"}, True),
    ("slapfed.core.wire", {"slapfed.core.errors", "json", "re"}, False),
    ("slapfed.federation.routing", {"slapfed.services.federation"}, True),
    ("slapfed.services.tx", {"slapfed.peering.forwarder"}, True),
    ("slapfed.services.tx", {"slapfed.master.request"}, True),
    ("slapfed.peering.forwarder", {"slapfed.services.federation", "threading"}, False),
    ("slapfed.master.app", {"slapfed.node.agent"}, True),
    ("slapfed.node.agent", {"slapfed.master"}, True),
    ("slapfed.node.plan", {"subprocess"}, True),
    ("slapfed.node.restarts", {"json"}, True),
], ids=["core-services", "core-flask", "core-os", "core-ok", "routing-services",
        "services-peering", "services-master", "peering-ok", "master-node", "node-master",
        "plan-subprocess", "restarts-json"])
def test_the_contract_refuses_what_it_does_not_allow(mod, imported, refused):
    assert bool(refusals(mod, imported)) is refused


def test_the_cycle_check_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_import_each_other_in_a_circle():
    """Modules of slapfed form no import cycle (a package's own __init__ aside: it is
    imported before its modules anyway)."""
    known = _modules_and_packages()

    def resolve(name):
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for path in SOURCES:
        mod = _name(path)
        graph[mod] = {r for r in (resolve(n) for n in _imports(path) if n.startswith("slapfed"))
                      if r and r != mod and not mod.startswith(r + ".")}
    cycles = _cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


# -- the use cases keep no state of their own ------------------------------------------
MUTABLE_TYPES = (dict, list, set, bytearray)


def _assigned_names(source: str) -> set[str]:
    """The names a module's own top-level statements assign (imports aside)."""
    names = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _state_holders(module, own=None) -> list[str]:
    """Module globals of ``module`` that it assigns itself (``own``; default: read from
    its source) and that can hold state between calls: mutable containers (dict, list,
    set, deque, weak dictionaries) and synchronisation objects (locks, conditions,
    events: they guard or signal state)."""
    import collections
    import threading
    import weakref
    sync = (type(threading.Lock()), type(threading.RLock()), threading.Condition,
            threading.Event, threading.Semaphore)
    holders = (*MUTABLE_TYPES, collections.deque, weakref.WeakKeyDictionary,
               weakref.WeakValueDictionary, weakref.WeakSet, *sync)
    if own is None:
        own = _assigned_names(Path(module.__file__).read_text())
    out = []
    for name, value in vars(module).items():
        if name not in own or name.startswith("__"):
            continue
        if isinstance(value, holders):
            out.append(f"{module.__name__}.{name} ({type(value).__name__})")
    return out


SERVICES = [m for m in MODULES if _within(m, "slapfed.services")] + ["slapfed.services"]


@pytest.mark.parametrize("module", SERVICES)
def test_the_use_cases_keep_no_module_level_state(module):
    """Rule: a module of slapfed.services holds constants only (numbers, strings, tuples,
    frozensets, read-only mappings, functions, classes); whatever lives between calls
    (the writer, the placement snapshot, settings) is owned by the runtime passed in
    (services.runtime.Runtime). No ``global`` statement either."""
    import importlib
    mod = importlib.import_module(module)
    assert not _state_holders(mod)
    source = Path(mod.__file__).read_text()
    assert not [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Global)]


def test_the_state_check_sees_a_registry():
    import types
    import weakref
    fake = types.ModuleType("slapfed.services.fake")
    fake.LIMIT, fake.KEYS = 3, ("a",)
    fake.FILTERS = {"imported": "from elsewhere"}
    own = _assigned_names("LIMIT, KEYS = 3, ('a',)\n_writers = {}\nseen: set = set()\n")
    assert _state_holders(fake, own) == []
    fake._writers = weakref.WeakKeyDictionary()
    fake.seen = set()
    assert _state_holders(fake, own) == ["slapfed.services.fake._writers (WeakKeyDictionary)",
                                         "slapfed.services.fake.seen (set)"]
