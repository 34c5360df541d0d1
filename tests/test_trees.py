"""services.trees: an instance tree's root and its instances, on damaged trees too."""
from types import SimpleNamespace as NS

from slapfed.services.trees import MAX_TREE_DEPTH, tree_instances, tree_root


def world(edges):
    """{id: parent id or None}, children derived (a parent that is not there is kept)."""
    nodes = {i: NS(id=i, parent=p, children=[]) for i, p in edges.items()}
    for i, p in edges.items():
        if p in nodes:
            nodes[p].children.append(i)
    return NS(instances=nodes)


def test_the_root_is_found_through_parents_and_stops_at_a_missing_one():
    app = world({"r": None, "a": "r", "b": "a", "x": "gone"})
    assert tree_root(app, app.instances["b"]).id == "r"
    assert tree_root(app, app.instances["r"]).id == "r"
    assert tree_root(app, app.instances["x"]).id == "x"


def test_a_cycle_costs_at_most_the_depth_bound():
    app = world({"a": "b", "b": "a"})
    assert tree_root(app, app.instances["a"]).id in ("a", "b")
    deep = world({f"n{i}": (f"n{i - 1}" if i else None) for i in range(MAX_TREE_DEPTH + 5)})
    assert tree_root(deep, deep.instances[f"n{MAX_TREE_DEPTH + 4}"]).id == "n4"


def test_a_tree_is_walked_breadth_first_each_instance_once_within_the_limit():
    app = world({"r": None, "a": "r", "b": "r", "c": "a"})
    app.instances["c"].children.append("r")            # damaged: a cycle back to the root
    app.instances["a"].children.append("missing")
    assert [n.id for n in tree_instances(app, app.instances["r"])] == ["r", "a", "b", "c"]
    assert [n.id for n in tree_instances(app, app.instances["r"], limit=2)] == ["r", "a"]
    assert len(list(tree_instances(app, app.instances["r"], limit=None))) == 4
