"""Pictures of the federation graph: node-link JSON, Graphviz dot text, and a layered tree
layout that slapfed draws itself as SVG (by hand) or PNG (with Pillow); no Graphviz binary.

Pure except ``png`` (which renders in memory with Pillow and returns bytes); depends on
networkx, the sibling graph module and, for PNG and text measuring, Pillow when installed.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import networkx as nx

from . import graph as g
from .files import TRUST_LEVELS

# -- look --------------------------------------------------------------------------------
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
TITLE_SIZE, SUB_SIZE = 13, 10.5
PAD_X, BOX_H = 12, 40
GAP_X, ROW_H = 14, 86
MARGIN, LEFT = 28, 104                    # page margin; column of row names
# (fill, stroke, text) per kind: light fills, a saturated outline of the same hue.
STYLE = {
    "master": ("#312e81", "#1e1b4b", "#ffffff"),
    "continent": ("#dbeafe", "#2563eb", "#1e3a8a"),
    "country": ("#e0f2fe", "#0284c7", "#0c4a6e"),
    "lan": ("#dcfce7", "#16a34a", "#14532d"),
    "host": ("#fef9c3", "#ca8a04", "#713f12"),
    "computer": ("#ffedd5", "#ea580c", "#7c2d12"),
    "partition": ("#f1f5f9", "#64748b", "#1e293b"),
    "free": ("#ffffff", "#94a3b8", "#64748b"),
    "instance": ("#fce7f3", "#db2777", "#831843"),
    "shared": ("#f3e8ff", "#9333ea", "#581c87"),
}
ROW_NAMES = {"master": "masters", "continent": "continents", "country": "countries",
             "lan": "LANs", "host": "hosts", "computer": "computers",
             "partition": "partitions", "instance": "instances", "shared": "shared"}
ROWS = ("master", "continent", "country", "lan", "host", "computer", "partition",
        "instance", "shared")
# One hue per master: its box, its computers' accent strip, a badge on the site it runs at.
MASTER_HUES = ("#4f46e5", "#0891b2", "#c026d3", "#059669", "#d97706", "#dc2626",
               "#7c3aed", "#0d9488", "#65a30d", "#db2777")
STATE_COLOURS = {"started": "#16a34a", "stopped": "#64748b", "pending": "#f59e0b",
                 "failed": "#dc2626", "destroyed": "#1e293b"}
EDGE = "#94a3b8"
# Links between masters, by trust: (width, dashed, colour); a link the live state shows
# down is drawn in DOWN, and the edge from a master to a child master one of its
# instances runs in PARENT (both with an arrowhead: delegation goes that way).
LINK_STYLE = {"full": (3.2, False, "#1e1b4b"), "delegate": (1.9, False, "#0284c7"),
              "observe": (1.4, True, "#64748b")}
DOWN = "#dc2626"
PARENT = "#9333ea"
REPLICA = "#0d9488"          # a primary to its replicas (dashed, with an arrowhead)
BACKGROUND = "#ffffff"
INK = "#0f172a"
MUTED = "#64748b"


# -- node-link JSON and dot ------------------------------------------------------------
def node_link(fed: g.FederationGraph) -> dict:
    """networkx node-link data of the whole graph (edges under "links")."""
    return nx.node_link_data(fed.graph, edges="links")


def dot(fed: g.FederationGraph) -> str:
    """Graphviz text: one node per graph node, filled by kind; master links undirected."""
    lines = ["digraph slapfed {", '  graph [rankdir=TB, fontname="DejaVu Sans", '
             'nodesep=0.25, ranksep=0.6];',
             '  node [shape=box, style="rounded,filled", fontname="DejaVu Sans", '
             'fontsize=10];', '  edge [color="#94a3b8", arrowsize=0.6];']
    for nid, attrs in fed.graph.nodes(data=True):
        kind = attrs["kind"]
        fill, stroke, text = STYLE["shared" if attrs.get("shared") else kind]
        label = attrs.get("label") or attrs.get("name") or nid
        if kind == "partition" and attrs.get("address"):
            label = f"{label}\\n{attrs['address']}"
        lines.append(f"  {_dq(nid)} [label={_dq(label, keep_newlines=True)}, "
                     f"kind={_dq(kind)}, fillcolor={_dq(fill)}, color={_dq(stroke)}, "
                     f"fontcolor={_dq(text)}];")
    done = set()
    for u, v, attrs in fed.graph.edges(data=True):
        kind = attrs["kind"]
        if kind == g.LINK:
            pair = frozenset((u, v))
            if pair in done:
                continue
            done.add(pair)
            width, dashed, colour = LINK_STYLE[attrs["trust"]]
            label = f"{attrs['latency_ms']:g} ms, {attrs['trust']}"
            if attrs.get("state"):
                label += f", {attrs['state']}"
                if attrs["state"] == "down":
                    colour = DOWN
            lines.append(f"  {_dq(u)} -> {_dq(v)} [kind=link, dir=none, penwidth={width}, "
                         f"style={'dashed' if dashed else 'solid'}, color={_dq(colour)}, "
                         f"label={_dq(label)}, latency_ms={attrs['latency_ms']:g}, "
                         f"cost={attrs['cost']:g}, trust={_dq(attrs['trust'])}, "
                         "constraint=false];")
        else:
            style = ', style=dashed' if kind in (g.LOCATED_AT, g.MANAGES, g.REQUESTED) else ''
            extra = ", constraint=false" if kind in (g.MANAGES, g.REQUESTED) else ""
            lines.append(f"  {_dq(u)} -> {_dq(v)} [kind={_dq(kind)}{style}{extra}];")
    masters = [n for n, a in fed.graph.nodes(data=True) if a["kind"] == "master"]
    if masters:
        lines.append("  { rank=min; " + " ".join(_dq(n) for n in masters) + " }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dq(text: str, keep_newlines: bool = False) -> str:
    out = str(text).replace("\\", "\\\\" if not keep_newlines else "\\").replace('"', '\\"')
    if not keep_newlines:
        out = out.replace("\n", " ")
    return f'"{out}"'


# -- measuring text ----------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _font(size: float, bold: bool):
    """A Pillow font (DejaVu Sans when installed, else Pillow's own), or None without
    Pillow."""
    try:
        from PIL import ImageFont
    except ImportError:
        return None
    for name in (("DejaVuSans-Bold.ttf",) if bold else ("DejaVuSans.ttf",)):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:           # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


@functools.lru_cache(maxsize=65536)
def text_width(text: str, size: float, bold: bool = False) -> float:
    font = _font(round(size * 4) / 4, bold)
    if font is not None and hasattr(font, "getlength"):
        return float(font.getlength(text))
    return len(text) * size * (0.66 if bold else 0.6)


# -- the scene: what to draw, in page coordinates ----------------------------------------
@dataclass
class Box:
    id: str
    kind: str
    x: float                 # left
    y: float                 # top
    w: float
    h: float
    title: str
    subtitle: str = ""
    style: str = ""          # key of STYLE (defaults to kind)
    accent: str | None = None   # a master's hue: strip on the left
    dot: str | None = None      # a state colour
    dashed: bool = False
    tooltip: str = ""
    badges: tuple = ()          # hues of the masters running at this site

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@dataclass
class Curve:
    """A cubic Bezier p0 c1 c2 p3, with an optional label at its middle."""
    points: tuple
    colour: str = EDGE
    width: float = 1.3
    dashed: bool = False
    label: str = ""
    label_colour: str = INK
    label_at: tuple | None = None   # centre of the label, chosen so labels never overlap
    arrow: bool = False              # an arrowhead at the end (p3), pointing along the curve


@dataclass
class Text:
    x: float
    y: float
    text: str
    size: float = SUB_SIZE
    colour: str = MUTED
    anchor: str = "start"    # start | middle | end
    bold: bool = False


@dataclass
class Scene:
    width: float
    height: float
    boxes: list = field(default_factory=list)
    curves: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    bands: list = field(default_factory=list)   # (y, h) of alternate row backgrounds


@dataclass
class _Node:
    id: str
    kind: str
    title: str
    subtitle: str = ""
    style: str = ""
    accent: str | None = None
    dot: str | None = None
    dashed: bool = False
    tooltip: str = ""
    children: list = field(default_factory=list)
    width: float = 0.0       # of the box
    span: float = 0.0        # of the subtree
    x: float = 0.0


def layout(fed: g.FederationGraph, all_partitions: bool = False) -> Scene:
    """Lay the containment tree out in rows (masters on top, then continents ... instances),
    each subtree centred over its children; links between masters as arcs above them."""
    graph = fed.graph
    hues = {m: MASTER_HUES[i % len(MASTER_HUES)]
            for i, m in enumerate(sorted(fed.masters.nodes))}
    forest = _forest(fed, hues, all_partitions)
    rows = [r for r in ROWS if r == "master" and fed.masters.number_of_nodes()
            or _has_row(forest, r)]
    for root in forest:
        _measure(root)
    masters = sorted(fed.masters.nodes)
    parents = _parent_edges(fed)
    replicas = _replica_edges(fed)
    n_links = fed.masters.number_of_edges() + sum(
        1 for u, v in parents if not fed.masters.has_edge(u, v)) + len(replicas)
    arc_room = 0 if not n_links else 54 + min(120, 14 * n_links)
    top = MARGIN + 44 + arc_room
    row_y = {r: top + i * ROW_H for i, r in enumerate(rows)}

    # horizontal placement of the tree
    x = MARGIN + LEFT
    for root in forest:
        _place(root, x)
        x += root.span + GAP_X * 2
    boxes: dict[str, Box] = {}
    curves: list[Curve] = []

    def emit(node: _Node, parent: Box | None) -> None:
        y = row_y[_row_of(node)]
        box = Box(node.id, node.kind, node.x, y, node.width, BOX_H, node.title, node.subtitle,
                  node.style or node.kind, node.accent, node.dot, node.dashed, node.tooltip)
        boxes[node.id] = box
        if parent is not None:
            curves.append(_down(parent, box))
        for child in node.children:
            emit(child, box)

    for root in forest:
        emit(root, None)

    # masters above the site they run at; spread so they never overlap
    master_boxes = []
    if "master" in row_y:
        wanted = []
        for name in masters:
            attrs = graph.nodes[g.node_id("master", name)]
            w = max(text_width(name, TITLE_SIZE, True), text_width(_master_sub(attrs),
                                                                     SUB_SIZE)) + 2 * PAD_X
            site = attrs.get("site")
            target = None
            if site and site in fed.topology.sites:
                sb = boxes.get(g.node_id(fed.topology.sites[site].level, site))
                target = sb.cx if sb else None
            wanted.append([target if target is not None else math.inf, w, name, attrs])
        # a replica stands right after its primary
        where = {t[2]: t[0] for t in wanted}
        for t in wanted:
            primary = t[3].get("primary")
            if t[3].get("role") == "replica" and where.get(primary, math.inf) != math.inf:
                t[0] = where[primary] + 1e-3
        wanted.sort(key=lambda t: (t[0], t[2]))
        cursor = MARGIN + LEFT
        placed = []
        for target, w, name, attrs in wanted:
            left = max(cursor, (target - w / 2) if target != math.inf else cursor)
            placed.append((left, w, name, attrs))
            cursor = left + w + GAP_X * 2
        for left, w, name, attrs in placed:
            b = Box(g.node_id("master", name), "master", left, row_y["master"], w, BOX_H,
                    name, _master_sub(attrs), "master", hues[name], None, False,
                    _tooltip(attrs))
            boxes[b.id] = b
            master_boxes.append(b)
            site = attrs.get("site")
            if site and site in fed.topology.sites:
                sb = boxes.get(g.node_id(fed.topology.sites[site].level, site))
                if sb is not None:      # a badge in the master's hue on the site it runs at
                    sb.badges = sb.badges + (hues[name],)

    width = max([b.x + b.w for b in boxes.values()] + [MARGIN + LEFT + 360]) + MARGIN
    # links: arcs above the masters, higher for masters further apart
    taken: list = [(b.x, b.y, b.x + b.w, b.y + b.h) for b in master_boxes]
    title_bottom = MARGIN + 22          # the title's baseline (MARGIN + 16) and descent
    band = (title_bottom + 2, (row_y["master"] if "master" in row_y else top) - 2)
    def span_of(e):
        return abs(boxes[g.node_id("master", e[0])].cx - boxes[g.node_id("master", e[1])].cx)

    # wider arcs rise higher, in even steps, so that arcs of similar span stay apart;
    # an edge to a child master that is no link of its own is drawn too
    links = {tuple(sorted((u, v))): dict(a) for u, v, a in fed.masters.edges(data=True)}
    for u, v in parents:
        links.setdefault(tuple(sorted((u, v))), {"parent_only": True})
    for (u, v), (mode, lag) in replicas.items():
        links.setdefault(tuple(sorted((u, v))), {"replica": mode, "primary": u, "lag": lag})
    edges = sorted(((u, v, a) for (u, v), a in links.items()),
                   key=lambda e: (span_of(e), e[0], e[1]))
    for rank, (u, v, attrs) in enumerate(edges):
        src, dst = ((attrs["primary"], v if u == attrs["primary"] else u)
                    if "replica" in attrs else _direction(fed, parents, u, v, attrs))
        bu, bv = boxes[g.node_id("master", src)], boxes[g.node_id("master", dst)]
        span = abs(bv.cx - bu.cx)
        lift = 26 + (arc_room - 40) * (rank + 1) / len(edges)
        y0 = bu.y
        step = span * 0.15 if bv.cx >= bu.cx else -span * 0.15
        pts = ((bu.cx, y0), (bu.cx + step, y0 - lift * 1.33),
               (bv.cx - step, y0 - lift * 1.33), (bv.cx, y0))
        parent = (src, dst) in parents
        if "replica" in attrs:
            lw, dashed, colour = 1.8, True, REPLICA
            label = f"replica · {attrs['replica'] or 'async'}"
            if attrs.get("lag") is not None:
                label += f" · lag {attrs['lag']:.2f} s"
        elif attrs.get("parent_only"):
            lw, dashed, colour = 1.8, True, PARENT
            label = "parent of"
        else:
            lw, dashed, colour = LINK_STYLE[attrs["trust"]]
            label = f"{attrs['latency_ms']:g} ms · {attrs['trust']}"
            if attrs.get("cost"):
                label += f" · cost {attrs['cost']:g}"
            if parent:
                colour, label = PARENT, "parent of · " + label
            if attrs.get("state") == "down":
                colour, label = DOWN, label + " · down"
            elif attrs.get("state") == "up":
                label += " · up"
        curve = Curve(pts, colour, lw, dashed, label,
                      label_colour=DOWN if attrs.get("state") == "down" else INK,
                      arrow="replica" in attrs or _directed(fed, parents, u, v, attrs))
        curve.label_at = _free_spot(curve, taken, band)
        curves.append(curve)
    if taken:
        width = max(width, max(r[2] for r in taken) + MARGIN)

    bottom = (row_y[rows[-1]] + BOX_H) if rows else top
    scene = Scene(width, bottom + 90, list(boxes.values()), curves)
    n_inst = sum(1 for _, a in graph.nodes(data=True) if a["kind"] == "instance")
    title = (f"slapfed federation: {len(masters)} master{'s' * (len(masters) != 1)}, "
             f"{len(fed.computers)} computer{'s' * (len(fed.computers) != 1)}, "
             f"{n_inst} instance{'s' * (n_inst != 1)}")
    if fed.local_master:
        title += f" (live state of {fed.local_master})"
    scene.texts.append(Text(MARGIN, MARGIN + 16, title, 16, INK, "start", True))
    for i, r in enumerate(rows):
        if i % 2 == 0:
            scene.bands.append((row_y[r] - (ROW_H - BOX_H) / 2, ROW_H))
        scene.texts.append(Text(MARGIN, row_y[r] + BOX_H / 2 + 4, ROW_NAMES[r], 11, MUTED))
    _legend(scene, bottom + 34, hues)
    return scene


def _parent_edges(fed: g.FederationGraph) -> set:
    """(parent, child) of every master that runs in an instance of another."""
    return {(a["parent"], name) for name, a in fed.masters.nodes(data=True)
            if a.get("parent") and a["parent"] in fed.masters}


def _replica_edges(fed: g.FederationGraph) -> dict:
    """{(primary, replica): (mode, lag in seconds or None)} of the replicas the live
    state names."""
    return {(fed.graph.nodes[u]["name"], fed.graph.nodes[v]["name"]):
            (a.get("mode"), a.get("lag_seconds"))
            for u, v, a in fed.graph.edges(data=True) if a["kind"] == g.REPLICATES}


def _directed(fed, parents, u, v, attrs) -> bool:
    """An edge has a direction when one end delegates to the other: a parent to its child
    master, or the local master to a peer it paired with (a link the live state knows);
    a link only the topology files declare goes both ways."""
    return (u, v) in parents or (v, u) in parents or bool(attrs.get("live")) \
        or bool(attrs.get("parent_only"))


def _direction(fed, parents, u, v, attrs) -> tuple[str, str]:
    """(from, to): parent to child, the local master to its peer, else as given."""
    if (v, u) in parents:
        return v, u
    if (u, v) in parents:
        return u, v
    if attrs.get("live") and fed.local_master in (u, v):
        return (u, v) if u == fed.local_master else (v, u)
    return u, v


def _arrowhead(points, size: float = 9.0) -> list:
    """The three corners of an arrowhead at the end of a Bezier curve."""
    (x2, y2), (x3, y3) = _bezier(points, 0.93), points[3]
    dx, dy = x3 - x2, y3 - y2
    n = math.hypot(dx, dy) or 1.0
    ux, uy = dx / n, dy / n
    bx, by = x3 - ux * size, y3 - uy * size
    return [(x3, y3), (bx - uy * size * 0.45, by + ux * size * 0.45),
            (bx + uy * size * 0.45, by - ux * size * 0.45)]


LABEL_TS = tuple(sorted((round(0.5 + d, 2) for d in
                         [i * 0.04 for i in range(-10, 11)]), key=lambda t: abs(t - 0.5)))
LABEL_STEP = 22.0            # how far a label moves off its curve when the curve is full


def _free_spot(curve: Curve, taken: list, bounds: tuple | None = None,
               ) -> tuple[float, float]:
    """A point where the curve's label overlaps no label placed before, no master box
    and no title (``taken``): on the curve, the middle first; else moved up or down off
    it in steps, within ``bounds`` (top, bottom) of the labels' band; else right of
    everything. Records the label's rectangle in ``taken``."""
    tw = text_width(curve.label, SUB_SIZE) + 10
    top, bottom = bounds if bounds is not None else (-math.inf, math.inf)

    def rect_at(x, y):
        return (x - tw / 2 - 3, y - 11, x + tw / 2 + 3, y + 10)

    def free(rect):
        return rect[1] >= top and rect[3] <= bottom and not any(
            rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3]
            for r in taken)

    points = [_bezier(curve.points, t) for t in LABEL_TS]
    span = max(1, int((bottom - top) // LABEL_STEP) if math.isfinite(bottom - top) else 8)
    for k in range(span + 1):
        for dy in ((0.0,) if k == 0 else (-k * LABEL_STEP, k * LABEL_STEP)):
            for x, y in points:
                rect = rect_at(x, y + dy)
                if free(rect):
                    taken.append(rect)
                    return x, y + dy
    # nowhere along or near the curve: beyond the right end of everything placed
    x = max(r[2] for r in taken) + tw / 2 + 8 if taken else _bezier(curve.points, 0.5)[0]
    y = _bezier(curve.points, 0.5)[1]
    rect = rect_at(x, y)
    taken.append(rect)
    return x, y


def _master_sub(attrs: dict) -> str:
    parts = []
    if attrs.get("site"):
        parts.append(f"at {attrs['site']}")
    if attrs.get("local"):
        parts.append("this master")
    if attrs.get("role") == "replica":
        parts.append(f"replica · epoch {attrs.get('epoch')}")
    elif attrs.get("role") and attrs.get("local"):
        parts.append(f"{attrs['role']} · epoch {attrs.get('epoch')}")
    return " · ".join(parts) or (attrs.get("url") or "")


def _tooltip(attrs: dict) -> str:
    keep = ("kind", "name", "url", "site", "address", "master", "labels", "capabilities",
            "state", "requester", "software_url", "software_type", "host", "lan", "country",
            "continent", "description")
    return "\n".join(f"{k}: {attrs[k]}" for k in keep if attrs.get(k) not in (None, "", {}, []))


def _row_of(node: _Node) -> str:
    return "shared" if node.style == "shared" else (
        "partition" if node.kind == "free" else node.kind)


def _has_row(forest: list, row: str) -> bool:
    todo = list(forest)
    while todo:
        n = todo.pop()
        if _row_of(n) == row:
            return True
        todo.extend(n.children)
    return False


def _forest(fed: g.FederationGraph, hues: dict, all_partitions: bool) -> list:
    graph = fed.graph

    def make(nid: str) -> _Node:
        a = graph.nodes[nid]
        kind = a["kind"]
        node = _Node(nid, kind, a.get("label") or a["name"], tooltip=_tooltip(a))
        if kind in ("continent", "country", "lan", "host"):
            node.subtitle = "" if a.get("declared", True) else "not in files"
            node.dashed = not a.get("declared", True)
        elif kind == "computer":
            node.accent = hues.get(a.get("master"))
            if a.get("registered"):
                node.subtitle = f"{a['used']}/{a['partitions']} used"
            else:
                exp = a.get("expected_partitions")
                node.subtitle = "not registered" + (f" · {exp} expected" if exp else "")
                node.dashed = True
            if a.get("capabilities"):
                node.subtitle += " · " + ",".join(a["capabilities"])
        elif kind == "partition":
            node.subtitle = a.get("address") or ""
        elif kind == "instance":
            node.style = "shared" if a.get("shared") else "instance"
            node.subtitle = a.get("state") or ""
            node.dot = STATE_COLOURS.get(a.get("state"))
        kids = sorted((v for v in graph.successors(nid)
                       if graph.edges[nid, v]["kind"] in (g.CONTAINS, g.RUNS, g.HOSTS_SHARED)),
                      key=lambda v: (graph.nodes[v]["kind"], graph.nodes[v]["name"]))
        if kind == "computer" and not all_partitions:
            free = [v for v in kids if graph.nodes[v]["kind"] == "partition"
                    and not graph.nodes[v].get("instance")]
            kids = [v for v in kids if v not in free]
            node.children = [make(v) for v in kids]
            if free:
                names = [graph.nodes[v]["name"] for v in free]
                node.children.append(_Node(
                    f"free:{nid}", "free", f"{len(free)} free",
                    names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}",
                    style="free", dashed=True, tooltip="free partitions: " + ", ".join(names)))
        else:
            node.children = [make(v) for v in kids]
        return node

    roots = [n for n, a in graph.nodes(data=True)
             if a["kind"] in ("continent", "country", "lan", "host", "computer")
             and not any(graph.edges[p, n]["kind"] == g.CONTAINS
                         for p in graph.predecessors(n))]
    order = {k: i for i, k in enumerate(g.KINDS)}
    roots.sort(key=lambda n: (order[graph.nodes[n]["kind"]], graph.nodes[n]["name"]))
    return [make(r) for r in roots]


def _measure(node: _Node) -> float:
    node.width = max(text_width(node.title, TITLE_SIZE, True),
                     text_width(node.subtitle, SUB_SIZE)) + 2 * PAD_X + (8 if node.dot else 0)
    kids = sum(_measure(c) for c in node.children) + GAP_X * max(0, len(node.children) - 1)
    node.span = max(node.width, kids)
    return node.span


def _place(node: _Node, left: float) -> None:
    kids = sum(c.span for c in node.children) + GAP_X * max(0, len(node.children) - 1)
    x = left + (node.span - kids) / 2
    for c in node.children:
        _place(c, x)
        x += c.span + GAP_X
    node.x = left + (node.span - node.width) / 2


def _down(parent: Box, child: Box) -> Curve:
    x1, y1 = parent.cx, parent.y + parent.h
    x2, y2 = child.cx, child.y
    mid = (y1 + y2) / 2
    return Curve(((x1, y1), (x1, mid), (x2, mid), (x2, y2)))


def _legend(scene: Scene, y: float, hues: dict) -> None:
    x = MARGIN
    scene.texts.append(Text(x, y + 14, "legend", 11, MUTED))
    x += LEFT - 10
    for kind in ("continent", "country", "lan", "host", "computer", "partition", "instance",
                 "shared"):
        label = {"lan": "LAN"}.get(kind, kind)
        w = text_width(label, SUB_SIZE) + 18
        scene.boxes.append(Box(f"legend:{kind}", kind, x, y, w, 20, "", "", kind))
        scene.texts.append(Text(x + w / 2, y + 14, label, SUB_SIZE, STYLE[kind][2], "middle"))
        x += w + 8
    x += 10
    entries = [(trust, *LINK_STYLE[trust], False) for trust in reversed(TRUST_LEVELS)]
    entries += [("link down", 1.9, False, DOWN, False),
                ("parent → child master", 1.8, True, PARENT, True),
                ("primary → replica", 1.8, True, REPLICA, True),
                ("delegates to", 1.9, False, LINK_STYLE["delegate"][2], True)]
    for label, lw, dashed, colour, arrow in entries:
        scene.curves.append(Curve(((x, y + 10), (x + 10, y + 10), (x + 20, y + 10),
                                   (x + 30, y + 10)), colour, lw, dashed, arrow=arrow))
        scene.texts.append(Text(x + 36, y + 14, label, SUB_SIZE, MUTED))
        x += 44 + text_width(label, SUB_SIZE) + 6
    scene.width = max(scene.width, x + MARGIN)
    if hues:
        y2, x2 = y + 32, MARGIN + LEFT - 10
        scene.texts.append(Text(MARGIN, y2 + 12, "masters", 11, MUTED))
        note = "(a dot of a master's colour marks the site it runs at; a strip, its computers)"
        for name, hue in hues.items():
            scene.boxes.append(Box(f"legend-master:{name}", "master", x2, y2 + 2, 12, 12, "",
                                   "", "master", hue))
            scene.texts.append(Text(x2 + 17, y2 + 12, name, SUB_SIZE, INK))
            x2 += 30 + text_width(name, SUB_SIZE)
        scene.texts.append(Text(x2 + 6, y2 + 12, note, SUB_SIZE, MUTED))
        x2 += 12 + text_width(note, SUB_SIZE)
        scene.width = max(scene.width, x2 + MARGIN)
        scene.height = max(scene.height, y2 + 30)


# -- SVG -------------------------------------------------------------------------------
def svg(scene: Scene) -> str:
    """The scene as a standalone SVG document (each box has a tooltip)."""
    w, h = math.ceil(scene.width), math.ceil(scene.height)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" font-family="{FONT}">',
           f'<rect width="{w}" height="{h}" fill="{BACKGROUND}"/>']
    for y, bh in scene.bands:
        out.append(f'<rect x="0" y="{y:.1f}" width="{w}" height="{bh:.1f}" fill="#f8fafc"/>')
    for c in scene.curves:
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = c.points
        dash = ' stroke-dasharray="6 4"' if c.dashed else ""
        out.append(f'<path d="M{x0:.1f},{y0:.1f} C{x1:.1f},{y1:.1f} {x2:.1f},{y2:.1f} '
                   f'{x3:.1f},{y3:.1f}" fill="none" stroke="{c.colour}" '
                   f'stroke-width="{c.width:g}"{dash}/>')
        if c.arrow:
            corners = " ".join(f"{px:.1f},{py:.1f}" for px, py in _arrowhead(c.points))
            out.append(f'<polygon points="{corners}" fill="{c.colour}"/>')
    for c in scene.curves:
        if c.label:
            lx, ly = c.label_at or _bezier(c.points, 0.5)
            tw = text_width(c.label, SUB_SIZE) + 10
            out.append(f'<rect x="{lx - tw / 2:.1f}" y="{ly - 9:.1f}" width="{tw:.1f}" '
                       f'height="17" rx="8" fill="#ffffff" stroke="#cbd5e1"/>')
            out.append(f'<text x="{lx:.1f}" y="{ly + 3.5:.1f}" font-size="{SUB_SIZE}" '
                       f'text-anchor="middle" fill="{c.label_colour}">{escape(c.label)}</text>')
    for b in scene.boxes:
        fill, stroke, ink = STYLE[b.style or b.kind]
        if b.kind == "master" and b.accent:
            fill, stroke = b.accent, b.accent
        dash = ' stroke-dasharray="5 3"' if b.dashed else ""
        out.append("<g>")
        if b.tooltip:
            out.append(f"<title>{escape(b.tooltip)}</title>")
        out.append(f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" '
                   f'rx="7" fill="{fill}" stroke="{stroke}" stroke-width="1.3"{dash}/>')
        if b.accent and b.kind != "master":
            out.append(f'<rect x="{b.x + 1:.1f}" y="{b.y + 6:.1f}" width="4" '
                       f'height="{b.h - 12:.1f}" rx="2" fill="{b.accent}"/>')
        cx = b.cx + (4 if b.dot else 0)
        if b.title:
            ty = b.y + (17 if b.subtitle else b.h / 2 + 4.5)
            out.append(f'<text x="{cx:.1f}" y="{ty:.1f}" font-size="{TITLE_SIZE}" '
                       f'font-weight="bold" text-anchor="middle" fill="{ink}">'
                       f'{escape(b.title)}</text>')
        if b.subtitle:
            out.append(f'<text x="{cx:.1f}" y="{b.y + 32:.1f}" font-size="{SUB_SIZE}" '
                       f'text-anchor="middle" fill="{ink}" fill-opacity="0.8">'
                       f'{escape(b.subtitle)}</text>')
        if b.dot:
            out.append(f'<circle cx="{b.x + 11:.1f}" cy="{b.y + b.h / 2:.1f}" r="4" '
                       f'fill="{b.dot}"/>')
        for i, hue in enumerate(b.badges):
            out.append(f'<circle cx="{b.x + b.w - 2 - 11 * i:.1f}" cy="{b.y + 2:.1f}" r="5.5" '
                       f'fill="{hue}" stroke="#ffffff" stroke-width="1.5"/>')
        out.append("</g>")
    for t in scene.texts:
        weight = ' font-weight="bold"' if t.bold else ""
        out.append(f'<text x="{t.x:.1f}" y="{t.y:.1f}" font-size="{t.size:g}" '
                   f'text-anchor="{t.anchor}" fill="{t.colour}"{weight}>{escape(t.text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _bezier(points, t: float) -> tuple[float, float]:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
    u = 1 - t
    return (u ** 3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t ** 3 * x3,
            u ** 3 * y0 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t ** 3 * y3)


# -- PNG -------------------------------------------------------------------------------
MAX_PNG_PIXELS = 60_000_000


def png(scene: Scene) -> bytes:
    """The scene rendered with Pillow (drawn at twice the size, then scaled down for smooth
    edges). Raises InvalidInput when Pillow is not installed."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        from ..core.errors import InvalidInput
        raise InvalidInput("PNG export needs Pillow (pip install pillow); use --format svg",
                           [{"field": "format", "problem": "Pillow is not installed"}]) from None
    w, h = math.ceil(scene.width), math.ceil(scene.height)
    k = 2 if w * h * 4 <= MAX_PNG_PIXELS else 1
    img = Image.new("RGB", (w * k, h * k), BACKGROUND)
    d = ImageDraw.Draw(img)

    def s(v: float) -> float:
        return v * k

    for y, bh in scene.bands:
        d.rectangle((0, s(y), s(w), s(y + bh)), fill="#f8fafc")
    for c in scene.curves:
        pts = [tuple(s(v) for v in _bezier(c.points, i / 32)) for i in range(33)]
        _polyline(d, pts, c.colour, max(1, round(c.width * k)), c.dashed, k)
        if c.arrow:
            d.polygon([(s(px), s(py)) for px, py in _arrowhead(c.points)], fill=c.colour)
    for c in scene.curves:
        if c.label:
            lx, ly = c.label_at or _bezier(c.points, 0.5)
            tw = text_width(c.label, SUB_SIZE) + 10
            d.rounded_rectangle((s(lx - tw / 2), s(ly - 9), s(lx + tw / 2), s(ly + 8)),
                                radius=s(8), fill="#ffffff", outline="#cbd5e1", width=k)
            _text(d, s(lx), s(ly + 3.5), c.label, SUB_SIZE * k, c.label_colour, "middle")
    for b in scene.boxes:
        fill, stroke, ink = STYLE[b.style or b.kind]
        if b.kind == "master" and b.accent:
            fill, stroke = b.accent, b.accent
        box = (s(b.x), s(b.y), s(b.x + b.w), s(b.y + b.h))
        d.rounded_rectangle(box, radius=s(7), fill=fill,
                            outline=None if b.dashed else stroke, width=max(1, round(1.3 * k)))
        if b.dashed:
            _dashed_rect(d, box, stroke, max(1, round(1.3 * k)), k)
        if b.accent and b.kind != "master":
            d.rounded_rectangle((s(b.x + 1), s(b.y + 6), s(b.x + 5), s(b.y + b.h - 6)),
                                radius=s(2), fill=b.accent)
        cx = b.cx + (4 if b.dot else 0)
        if b.title:
            ty = b.y + (17 if b.subtitle else b.h / 2 + 4.5)
            _text(d, s(cx), s(ty), b.title, TITLE_SIZE * k, ink, "middle", bold=True)
        if b.subtitle:
            _text(d, s(cx), s(b.y + 32), b.subtitle, SUB_SIZE * k, ink, "middle")
        if b.dot:
            r, cx0, cy0 = s(4), s(b.x + 11), s(b.y + b.h / 2)
            d.ellipse((cx0 - r, cy0 - r, cx0 + r, cy0 + r), fill=b.dot)
        for i, hue in enumerate(b.badges):
            r, cx0, cy0 = s(5.5), s(b.x + b.w - 2 - 11 * i), s(b.y + 2)
            d.ellipse((cx0 - r, cy0 - r, cx0 + r, cy0 + r), fill=hue, outline="#ffffff",
                      width=max(1, round(1.5 * k)))
    for t in scene.texts:
        _text(d, s(t.x), s(t.y), t.text, t.size * k, t.colour, t.anchor, bold=t.bold)
    if k > 1:
        img = img.resize((w, h), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _text(d, x: float, y: float, text: str, size: float, colour: str, anchor: str,
          bold: bool = False) -> None:
    """Text with its baseline at y (as SVG places it)."""
    font = _font(round(size * 4) / 4, bold)
    a = {"start": "ls", "middle": "ms", "end": "rs"}[anchor]
    try:
        d.text((x, y), text, fill=colour, font=font, anchor=a)
    except ValueError:          # bitmap fonts do not support anchors
        tw = d.textlength(text, font=font)
        shift = {"start": 0, "middle": tw / 2, "end": tw}[anchor]
        d.text((x - shift, y - size * 0.8), text, fill=colour, font=font)


def _polyline(d, pts, colour, width, dashed, k) -> None:
    if not dashed:
        d.line(pts, fill=colour, width=width, joint="curve")
        return
    on, off = 6 * k, 4 * k
    drawing, left = True, on
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        seg = math.hypot(x1 - x0, y1 - y0)
        pos = 0.0
        while seg - pos > 1e-6:
            step = min(left, seg - pos)
            if drawing:
                t0, t1 = pos / seg, (pos + step) / seg
                d.line((x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0,
                        x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1), fill=colour, width=width)
            pos += step
            left -= step
            if left <= 1e-6:
                drawing = not drawing
                left = on if drawing else off


def _dashed_rect(d, box, colour, width, k) -> None:
    x0, y0, x1, y1 = box
    r = 7 * k
    _polyline(d, [(x0 + r, y0), (x1 - r, y0)], colour, width, True, k)
    _polyline(d, [(x0 + r, y1), (x1 - r, y1)], colour, width, True, k)
    _polyline(d, [(x0, y0 + r), (x0, y1 - r)], colour, width, True, k)
    _polyline(d, [(x1, y0 + r), (x1, y1 - r)], colour, width, True, k)
    for cx, cy, start in ((x0 + r, y0 + r, 180), (x1 - r, y0 + r, 270),
                          (x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90)):
        d.arc((cx - r, cy - r, cx + r, cy + r), start, start + 90, fill=colour, width=width)
