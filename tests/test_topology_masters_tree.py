"""`slapfed topology show` draws the tree of masters: each child under its parent."""
import pytest

from slapfed.topology.report import masters_tree_lines


def master(name, parent=None, local=False, url=None, instance=None):
    return {"name": name, "parent": parent, "local": local, "url": url, "instance": instance}


@pytest.mark.parametrize("masters, expected", [
    ([master("root", local=True)], []),
    ([master("root", local=True), master("eu", "root", url="https://eu", instance="i-1"),
      master("asia", "root", instance="i-2")],
     ["tree of masters",
      "└─ root  [this master]",
      "   ├─ eu  https://eu  (instance i-1)",
      "   └─ asia  (instance i-2)", ""]),
    ([master("child", "root", local=True), master("grand", "child")],
     ["tree of masters",
      "└─ child  [this master]",
      "   └─ grand", ""]),
], ids=["alone", "two-children", "parent-not-known-locally"])
def test_children_are_drawn_under_their_parent(masters, expected):
    assert masters_tree_lines({"masters": masters}) == expected
