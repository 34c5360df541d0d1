"""Pictures at scale: no two labels of an exported SVG overlap, at the size of the
intercontinental example (its 46 nodes, and more with a live state: peers up and down,
child masters, replicas, registered computers running instances); replicas are drawn
with their role and epoch, and `topology show` names them."""
import os
import xml.etree.ElementTree as ET

import pytest

from slapfed.topology import draw, files, graph, report

TOPOLOGY_DIR = os.path.join(os.path.dirname(__file__), "..", "topology")
INTER = os.path.join(TOPOLOGY_DIR, "intercontinental.toml")
SVG = "{http://www.w3.org/2000/svg}"


def label_boxes(svg_text: str) -> list[tuple]:
    """(left, top, right, bottom, text) of every label of the picture: each link label
    as the rounded pill drawn behind it, every other text by its own extent (width as
    slapfed measures it, ascent and descent of its font size)."""
    root = ET.fromstring(svg_text)
    pills = [(float(r.get("x")), float(r.get("y")),
              float(r.get("x")) + float(r.get("width")),
              float(r.get("y")) + float(r.get("height")))
             for r in root.iter(SVG + "rect") if r.get("rx") == "8"]
    out, in_pill = [], set()
    for t in root.iter(SVG + "text"):
        size, x, y = float(t.get("font-size")), float(t.get("x")), float(t.get("y"))
        w = draw.text_width(t.text or "", size, t.get("font-weight") == "bold")
        left = x - {"start": 0, "middle": w / 2, "end": w}[t.get("text-anchor", "start")]
        pill = next((i for i, p in enumerate(pills)
                     if p[0] <= x <= p[2] and p[1] <= y <= p[3]), None)
        if pill is not None and pill not in in_pill:
            in_pill.add(pill)
            out.append((*pills[pill], t.text))
        else:
            out.append((left, y - 0.8 * size, left + w, y + 0.25 * size, t.text))
    assert len(in_pill) == len(pills), "every pill holds its label"
    return out


def overlapping(boxes: list[tuple]) -> list[tuple]:
    return [(a[4], b[4]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]]


def busy_live() -> dict:
    """The live state of eu at its busiest: every neighbour a paired peer (one link
    down), three child masters (one paired), two replicas, its two computers
    registered with instances on their partitions (long references)."""
    comps, insts = [], []
    for cid, site, n in (("par-1-b", ("par-1-b", "par-1", "fr", "europe"), 6),
                         ("fra-1-a", ("fra-1-a", "fra-1", "de", "europe"), 4)):
        host, lan, country, continent = site
        parts = [{"id": f"slappart{i}", "address": f"10.0.{len(comps)}.{i + 1}",
                  "instance": f"i-{cid}-{i}" if i < n - 1 else None} for i in range(n)]
        comps.append({"id": cid, "host": host, "lan": lan, "country": country,
                      "continent": continent, "labels": {}, "capabilities": [],
                      "last_contact": None, "partitions": parts})
        for p in parts:
            if p["instance"]:
                insts.append({"id": p["instance"], "reference": f"frontend-{p['instance']}",
                              "requester": "person/alice", "parent": None, "children": [],
                              "shared": False, "host_instance": None,
                              "software_url": "https://example/sr.cfg",
                              "software_type": "default", "requested_state": "started",
                              "state": "started", "reason": None,
                              "placement": {"computer": cid, "partition": p["id"],
                                            "address": p["address"]},
                              "delegation": None})
    peers = [{"name": n, "link": "down" if n == "us-east" else "up", "trust": t,
              "latency_ms": ms, "cost": c}
             for n, t, ms, c in (("us-east", "full", 75, 2), ("sea", "delegate", 155, 4),
                                 ("latam", "observe", 190, 5),
                                 ("eu-child-0", "delegate", 1, 0))]
    return {"master": "eu", "computers": comps, "instances": insts,
            "masters": [{"name": f"eu-child-{i}", "url": f"https://child-{i}:8443",
                         "instance": f"i-par-1-b-{i}", "reference": f"child-master-{i}"}
                        for i in range(3)],
            "peers": peers,
            "replication": {"role": "primary", "epoch": 3, "epochs": [], "replicas": [
                {"name": "eu-replica-1", "url": "https://r1:8443", "mode": "sync",
                 "lag_seconds": 0.04},
                {"name": "eu-replica-2", "url": "https://r2:8443", "mode": "async"}]}}


@pytest.mark.parametrize("live, all_partitions", [
    (None, False), (None, True), ("busy", False), ("busy", True)],
    ids=["files", "files-all-partitions", "busy-live", "busy-live-all-partitions"])
def test_no_two_labels_of_the_intercontinental_picture_overlap(live, all_partitions):
    fed = graph.build(files.load([INTER]), busy_live() if live else None)
    assert fed.graph.number_of_nodes() >= 46
    text = draw.svg(draw.layout(fed, all_partitions))
    boxes = label_boxes(text)
    assert len(boxes) > 60
    assert overlapping(boxes) == []


def test_labels_move_off_a_crowded_curve_rather_than_overlap():
    """Twenty links between two masters side by side: every label still finds a spot
    (none overlaps another, none rises into the title)."""
    topo = files.load([INTER])
    live = {"master": "eu", "computers": [], "instances": [], "masters": [],
            "peers": [{"name": f"peer-{i:02d}", "link": "up", "trust": "delegate",
                       "latency_ms": i, "cost": 1} for i in range(20)]}
    text = draw.svg(draw.layout(graph.build(topo, live)))
    boxes = label_boxes(text)
    assert sum(1 for b in boxes if " ms · delegate" in (b[4] or "")) >= 20
    assert overlapping(boxes) == []


def test_replicas_are_drawn_beside_their_primary_with_role_and_epoch():
    fed = graph.build(files.load([INTER]), busy_live())
    scene = draw.layout(fed)
    masters = {b.title: b for b in scene.boxes if b.kind == "master" and b.title}
    assert masters["eu"].subtitle.endswith("this master · primary · epoch 3")
    assert masters["eu-replica-1"].subtitle == "replica · epoch 3"
    assert masters["eu"].x < masters["eu-replica-1"].x < masters["eu-replica-2"].x
    text = draw.svg(scene)
    assert "replica · sync · lag 0.04 s" in text and "replica · async<" in text
    assert f'stroke="{draw.REPLICA}"' in text


def test_topology_show_names_replicas_with_role_and_epoch():
    fed = graph.build(files.load([INTER]), busy_live())
    data = report.tree(fed)
    by_name = {m["name"]: m for m in data["masters"]}
    assert by_name["eu"]["role"] == "primary" and by_name["eu"]["epoch"] == 3
    assert by_name["eu-replica-2"]["replica_of"] == "eu"
    text = report.tree_text(data)
    assert "master eu  https://eu.federation.example" in text
    assert "[primary, epoch 3]" in text
    assert ("master eu-replica-1  https://r1:8443  [replica of eu, sync, epoch 3, lag 0.04 s]"
            in text)
    assert "master eu-replica-2  https://r2:8443  [replica of eu, async, epoch 3]" in text


def test_a_live_state_without_replication_facts_draws_as_before():
    """An answer of a master that says nothing of replication (older, or a test's)."""
    live = busy_live()
    live.pop("replication")
    fed = graph.build(files.load([INTER]), live)
    assert not any(a.get("role") for _, a in fed.graph.nodes(data=True))
    scene = draw.layout(fed)
    assert not [b.subtitle for b in scene.boxes if "epoch" in b.subtitle]
    assert not [c for c in scene.curves if c.label.startswith("replica")]
