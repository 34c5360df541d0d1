"""`slapfed topology export`: node-link JSON, Graphviz dot, SVG and PNG drawn by slapfed."""
import json
import os
from pathlib import Path
import re
import struct
import xml.etree.ElementTree as ET

import networkx as nx
import pytest
from click.testing import CliRunner

from slapfed.cli.main import cli
from slapfed.topology import draw, files, graph

from conftest import TOPOLOGY_DIR
from test_topology_graph import TOPO_TEXT, live_state

EXAMPLES = sorted(os.path.join(TOPOLOGY_DIR, f) for f in os.listdir(TOPOLOGY_DIR)
                  if f.endswith(".toml"))


@pytest.fixture(scope="module")
def fed():
    topo, problems = files.parse([("t.toml", TOPO_TEXT)])
    assert not problems
    return graph.build(topo, live_state())


def export(*args):
    return CliRunner().invoke(cli, ["topology", "export", *args], catch_exceptions=False)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_json_is_node_link_data_that_rebuilds_the_graph(fed):
    data = json.loads(json.dumps(draw.node_link(fed)))
    back = nx.node_link_graph(data, edges="links")
    assert back.number_of_nodes() == fed.graph.number_of_nodes()
    assert back.number_of_edges() == fed.graph.number_of_edges()
    assert back.nodes["instance:i-web"]["reference"] == "web-1"


def test_dot_describes_every_node_and_edge(fed):
    text = draw.dot(fed)
    assert text.startswith("digraph slapfed {") and text.rstrip().endswith("}")
    try:
        import pydot  # noqa: F401
    except ImportError:
        ids = set(re.findall(r'^  "([^"]+)" \[label=', text, re.M))
        assert ids == set(fed.graph.nodes)
        edges = re.findall(r'^  "([^"]+)" -> "([^"]+)"', text, re.M)
        links = sum(1 for _u, _v, d in fed.graph.edges(data=True) if d["kind"] == graph.LINK)
        assert len(edges) == fed.graph.number_of_edges() - links // 2
        assert 'kind=link, dir=none' in text and 'trust="observe"' in text
    else:
        back = nx.nx_pydot.from_pydot(__import__("pydot").graph_from_dot_data(text)[0])
        assert set(fed.graph.nodes) <= set(back.nodes)


def test_svg_is_xml_with_every_box_labelled(fed):
    doc = draw.svg(draw.layout(fed))
    root = ET.fromstring(doc)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    width, height = float(root.get("width")), float(root.get("height"))
    assert 600 < width < 20000 and 300 < height < 5000
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    for label in ("eu", "europe", "par-1", "par-1-a", "a1", "p0", "db-1", "site-1",
                  "10 ms · full · cost 1"):
        assert label in texts, label


def test_layout_never_overlaps_boxes(fed):
    scene = draw.layout(fed, all_partitions=True)
    boxes = [b for b in scene.boxes if not b.id.startswith("legend")]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if abs(a.y - b.y) < 1:
                assert a.x + a.w <= b.x or b.x + b.w <= a.x, (a.id, b.id)


def test_png_has_the_signature_and_a_sane_size(fed):
    data = draw.png(draw.layout(fed))
    w, h = png_size(data)
    assert 600 < w < 20000 and 300 < h < 5000
    assert len(data) > 10_000


@pytest.mark.parametrize("fmt", ["json", "dot", "svg", "png"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_export_every_example_in_every_format(tmp_path, path, fmt):
    out = tmp_path / f"out.{fmt}"
    r = export("-f", path, "--format", fmt, "-o", str(out), "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    data = out.read_bytes()
    assert summary["bytes"] == len(data) and summary["nodes"] > 0
    if fmt == "png":
        png_size(data)
    elif fmt == "svg":
        ET.fromstring(data)
    elif fmt == "json":
        assert json.loads(data)["nodes"]
    else:
        assert data.startswith(b"digraph")


def test_export_to_stdout_and_png_needs_a_file():
    inter = os.path.join(TOPOLOGY_DIR, "intercontinental.toml")
    r = export("-f", inter, "--format", "svg")
    assert r.exit_code == 0 and r.output.startswith("<svg")
    r = export("-f", inter, "--format", "png")
    assert r.exit_code == 3 and "-o FILE.png" in r.output


def test_the_picture_tells_direction_trust_and_link_state():
    """Live state of eu: a peer whose link is down is drawn red and says so; a child
    master (paired as a peer) gets a purple edge with an arrowhead from its parent; an
    unpaired child master a dashed 'parent of' edge; trust levels have their colours."""
    from slapfed.topology import draw, files, graph
    topo = files.load([str(Path(__file__).resolve().parents[1] / "topology" /
                           "intercontinental.toml")])
    live = {"master": "eu", "computers": [], "instances": [],
            "masters": [{"name": "eu-child", "url": "https://c:1", "instance": "i-1",
                         "reference": "child-master"},
                        {"name": "eu-lab", "url": "https://l:1", "instance": "i-2",
                         "reference": "lab"}],
            "peers": [{"name": "us-east", "link": "down", "trust": "full",
                       "latency_ms": 75, "cost": 2},
                      {"name": "eu-child", "link": "up", "trust": "delegate",
                       "latency_ms": 1, "cost": 0}]}
    text = draw.svg(draw.layout(graph.build(topo, live)))
    assert "75 ms · full · cost 2 · down" in text
    assert f'stroke="{draw.DOWN}"' in text
    assert "parent of · 1 ms · delegate · up" in text
    assert text.count(f'<polygon points="') >= 3          # two parent edges, the legend
    assert f'fill="{draw.PARENT}"' in text
    assert ">parent of<" in text                          # eu-lab: a child, not a peer
    for trust, (_w, _dashed, colour) in draw.LINK_STYLE.items():
        assert f'stroke="{colour}"' in text, trust
