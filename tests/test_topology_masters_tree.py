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


# -- replicas and epochs ---------------------------------------------------------------------
def test_topology_show_tells_replicas_and_epochs():
    from slapfed.topology import graph, report
    from slapfed.topology.files import EMPTY
    live = {"master": "root", "computers": [], "instances": [], "peers": [],
            "replication": {"role": "primary", "epoch": 2,
                            "epochs": [{"epoch": 2, "primary": "r1", "at": None}],
                            "replicas": [{"name": "old", "url": "https://127.0.0.2:9",
                                          "mode": "sync"}]},
            "masters": [{"name": "eu-1", "url": "https://127.0.0.3:1", "instance": "i-1",
                         "reference": "eu-1", "replicas": [
                             {"name": "eu-1-replica-1", "reference": "eu-1-replica-1",
                              "instance": "i-2", "url": "https://127.0.0.4:1",
                              "mode": "sync", "computer": "c2", "state": "started"}]}]}
    data = report.tree(graph.build(EMPTY, live))
    [root] = [m for m in data["masters"] if m["name"] == "root"]
    [child] = [m for m in data["masters"] if m["name"] == "eu-1"]
    assert root["replication"]["epoch"] == 2 and child["replicas"][0]["computer"] == "c2"
    text = report.tree_text(data)
    assert "master root  [this master]  [primary, epoch 2]\n   promotions: 2: r1\n" in text
    assert "master old  https://127.0.0.2:9  [replica of root, sync, epoch 2]" in text
    assert ("   replica eu-1-replica-1  https://127.0.0.4:1  [instance i-2 on c2, started]"
            in text)


def test_a_master_without_replicas_shows_no_replication_line():
    from slapfed.topology import graph, report
    from slapfed.topology.files import EMPTY
    live = {"master": "root", "computers": [], "instances": [], "peers": [], "masters": [],
            "replication": {"role": "primary", "epoch": 1, "epochs": [], "replicas": []}}
    assert "epoch" not in report.tree_text(report.tree(graph.build(EMPTY, live)))
