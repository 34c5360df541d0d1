"""Instance trees: the root an instance's tree hangs from, and the instances of a tree.

Depends on model objects only through their attributes (``app.instances``, an instance's
``parent`` and ``children``); no I/O. The bounds keep a damaged tree (a parent missing,
a cycle) from costing more than a sane one.
"""
from __future__ import annotations

from collections import deque

MAX_TREE_DEPTH = 64             # parents followed up to a root
MAX_TREE_SIZE = 10_000          # instances of one tree visited


def tree_root(app, inst):
    """The root of ``inst``'s tree: parents followed while they exist (at most
    MAX_TREE_DEPTH of them)."""
    for _ in range(MAX_TREE_DEPTH):
        if inst.parent is None:
            break
        parent = app.instances.get(inst.parent)
        if parent is None:
            break
        inst = parent
    return inst


def tree_instances(app, root, limit: int | None = MAX_TREE_SIZE):
    """``root`` and its descendants, breadth first, each once; at most ``limit`` of them
    (None: all)."""
    queue, seen, visited = deque([root]), {root.id}, 0
    while queue and (limit is None or visited < limit):
        node = queue.popleft()
        visited += 1
        yield node
        for cid in node.children:
            child = app.instances.get(cid)
            if child is not None and cid not in seen:
                seen.add(cid)
                queue.append(child)
