"""Topology files: the examples pass, and every validation problem names file, line/key, cause."""
from pathlib import Path

import pytest

from slapfed.core.errors import InvalidInput
from slapfed.topology import files

EXAMPLES = sorted((Path(__file__).parent.parent / "topology").glob("*.toml"))

BASE = """
[sites.europe.fr.par-1]
hosts = ["par-1-a", "par-1-b"]

[sites.europe.de.fra-1]
hosts = ["fra-1-a"]

[[masters]]
name = "eu"
site = "par-1-a"

[[masters]]
name = "de"
site = "fra-1"

[[computers]]
id = "c1"
site = "par-1-a"
master = "eu"
"""


def problems_of(*sources):
    topo, problems = files.parse(sources)
    return problems


def test_the_examples_are_shipped():
    names = {p.name for p in EXAMPLES}
    assert {"home-lab.toml", "two-providers-cdn.toml", "intercontinental.toml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_valid(path):
    topo = files.load([path])
    assert topo.masters and topo.computers and topo.sites
    for comp in topo.computers.values():
        assert topo.locality_of(comp.site)["continent"] is not None


def test_the_examples_are_valid_together():
    topo = files.load(EXAMPLES)
    assert len(topo.files) == len(EXAMPLES)


# (case id, extra TOML appended to BASE, expected line (None: not asserted), key, words in problem)
INVALID = [
    ("unknown-top-key", 'colour = "blue"', 23, "colour", "unknown key"),
    ("bad-version", "version = 2", 23, "version", "must be 1"),
    ("lan-under-two-countries", "[sites.europe.de.par-1]\nhosts = []", 23,
     "sites.europe.de.par-1", "already in country 'fr'"),
    ("host-under-two-lans", '[sites.europe.de.fra-2]\nhosts = ["par-1-a"]', 24,
     "sites.europe.de.fra-2.hosts[0]", "already in LAN 'par-1'"),
    ("name-at-two-levels", '[sites.europe.de.de-1]\nhosts = ["fr"]', 24,
     "sites.europe.de.de-1.hosts[0]", "already a country"),
    ("country-under-two-continents", '[sites.asia.fr.x]\nhosts = []', 23, "sites.asia.fr",
     "already in continent 'europe'"),
    ("host-listed-twice", '[sites.europe.fr.par-2]\nhosts = ["h", "h"]', 24,
     "sites.europe.fr.par-2.hosts[1]", "listed twice"),
    ("hosts-without-lan", '[sites.europe.fr]\nhosts = ["x"]', 24, "sites.europe.fr.hosts",
     "hosts belong to a LAN"),
    ("unknown-lan-key", '[sites.europe.fr.par-2]\nracks = 3', 24,
     "sites.europe.fr.par-2.racks", "unknown key (known here: hosts, description)"),
    ("bad-site-name", '[sites.europe.fr."par 1"]\nhosts = []', 23,
     'sites.europe.fr."par 1"', "not a valid LAN name"),
    ("duplicate-master", '[[masters]]\nname = "eu"\nsite = "fr"', 24, "masters[2].name",
     "already declared"),
    ("master-without-site", '[[masters]]\nname = "m3"', 23, "masters[2].site", "is required"),
    ("master-unknown-site", '[[masters]]\nname = "m3"\nsite = "par-9"', 25, "masters[2].site",
     "unknown site 'par-9'"),
    ("master-bad-url", '[[masters]]\nname = "m3"\nsite = "fr"\nurl = "ftp://x"', 26,
     "masters[2].url", "http:// or https://"),
    ("duplicate-computer", '[[computers]]\nid = "c1"\nsite = "fr"', 24, "computers[1].id",
     "already declared"),
    ("computer-unknown-site", '[[computers]]\nid = "c2"\nsite = "lyon"', 25,
     "computers[1].site", "unknown site 'lyon'"),
    ("computer-unknown-master", '[[computers]]\nid = "c2"\nsite = "fr"\nmaster = "us"', 26,
     "computers[1].master", "unknown master 'us'"),
    ("computer-lan-key", '[[computers]]\nid = "c2"\nsite = "fr"\nlan = "par-1"', 26,
     "computers[1].lan", "site = 'par-1'"),
    ("computer-label-not-string", '[[computers]]\nid = "c2"\nsite = "fr"\nlabels = { ram = 4 }',
     26, "computers[1].labels.ram", "must be a string"),
    ("computer-bad-capability", '[[computers]]\nid = "c2"\nsite = "fr"\ncapabilities = ["GPU!"]',
     26, "computers[1].capabilities[0]", "capability name"),
    ("computer-negative-partitions", '[[computers]]\nid = "c2"\nsite = "fr"\npartitions = -1',
     26, "computers[1].partitions", "whole number >= 0"),
    ("computer-bad-id", '[[computers]]\nid = "c 2"\nsite = "fr"', 24, "computers[1].id",
     "not a valid name"),
    ("negative-latency", '[[links]]\nfrom = "eu"\nto = "de"\nlatency_ms = -3', 26,
     "links[0].latency_ms", "must be >= 0"),
    ("latency-not-number", '[[links]]\nfrom = "eu"\nto = "de"\nlatency_ms = "fast"', 26,
     "links[0].latency_ms", "must be a number"),
    ("latency-missing", '[[links]]\nfrom = "eu"\nto = "de"', 23, "links[0].latency_ms",
     "is required"),
    ("infinite-latency", '[[links]]\nfrom = "eu"\nto = "de"\nlatency_ms = inf', 26,
     "links[0].latency_ms", "finite"),
    ("negative-cost", '[[links]]\nfrom = "eu"\nto = "de"\nlatency_ms = 3\ncost = -1', 27,
     "links[0].cost", "must be >= 0"),
    ("unknown-trust", '[[links]]\nfrom = "eu"\nto = "de"\nlatency_ms = 3\ntrust = "total"', 27,
     "links[0].trust", "observe, delegate, full"),
    ("self-link", '[[links]]\nfrom = "eu"\nto = "eu"\nlatency_ms = 3', 25, "links[0].to",
     "two different masters"),
    ("link-unknown-master", '[[links]]\nfrom = "eu"\nto = "asia"\nlatency_ms = 3', 25,
     "links[0].to", "unknown master 'asia'"),
    ("duplicate-link-reversed",
     '[[links]]\nfrom = "eu"\nto = "de"\nlatency_ms = 3\n[[links]]\nfrom = "de"\nto = "eu"\n'
     'latency_ms = 4', 27, "links[1]", "already linked"),
    ("links-not-array", 'links = "eu"', 23, "links", "array of tables ([[links]])"),
]


@pytest.mark.parametrize("extra, line, key, words", [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_topology_names_file_line_key_and_problem(extra, line, key, words):
    # Lines are given as if ``extra`` started on line 23; top-level keys must come before
    # any table, so such extras go first.
    if extra.startswith("["):
        text = BASE + "\n" + extra + "\n"
        offset = len(BASE.splitlines()) + 1 - 22
    else:
        text = extra + "\n" + BASE
        offset = -22
    line = None if line is None else line + offset
    problems = problems_of(("site.toml", text))
    assert problems, "expected a problem"
    found = [p for p in problems if p["key"] == key]
    assert found, problems
    p = found[0]
    assert p["file"] == "site.toml"
    assert words in p["problem"]
    if line is not None:
        assert p["line"] == line, (p, text.splitlines()[line - 1:line])
        assert p["field"] == f"site.toml:{line}: {key}"


def test_every_problem_is_collected_not_only_the_first():
    text = BASE + 'colour = 1\n[[computers]]\nid = "x"\nsite = "nowhere"\n' \
                  '[[links]]\nfrom = "eu"\nto = "de"\nlatency_ms = -1\ntrust = "?"\n'
    problems = problems_of(("a.toml", text))
    keys = {p["key"] for p in problems}
    # colour = 1 lands in the [[computers]] table above it: a computer's unknown key
    assert {"computers[0].colour", "computers[1].site", "links[0].latency_ms",
            "links[0].trust"} <= keys


@pytest.mark.parametrize("text, line, words", [
    ("a = 1\nb = [\n", 3, "TOML syntax error"),
    ("a = 1\n[sites\n", 2, "TOML syntax error"),
    ('x = "unterminated\n', 1, "TOML syntax error"),
], ids=["unclosed-array", "unclosed-header", "unterminated-string"])
def test_syntax_errors_give_the_line(text, line, words):
    problems = problems_of(("broken.toml", text))
    assert len(problems) == 1
    assert problems[0]["line"] == line and words in problems[0]["problem"]
    assert problems[0]["field"].startswith(f"broken.toml:{line}")


def test_references_cross_files_and_duplicates_name_both_files():
    a = '[sites.europe.fr.par-1]\nhosts = ["h1"]\n[[masters]]\nname = "eu"\nsite = "h1"\n'
    b = '[[computers]]\nid = "c1"\nsite = "h1"\nmaster = "eu"\n'
    topo, problems = files.parse([("a.toml", a), ("b.toml", b)])
    assert problems == []
    assert topo.locality_of(topo.computers["c1"].site) == {
        "host": "h1", "lan": "par-1", "country": "fr", "continent": "europe"}
    c = '[sites.europe.de.par-1]\nhosts = []\n'
    _topo, problems = files.parse([("a.toml", a), ("c.toml", c)])
    assert len(problems) == 1
    assert problems[0]["file"] == "c.toml" and "a.toml:1" in problems[0]["problem"]


def test_load_raises_invalid_input_with_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('colour = 1\n[[links]]\nfrom = "a"\n')
    with pytest.raises(InvalidInput) as info:
        files.load([bad, tmp_path / "missing.toml"])
    details = info.value.details
    assert any("cannot read" in d["problem"] and d["file"].endswith("missing.toml")
               for d in details)
    assert any(d["key"] == "colour" and d["line"] == 1 for d in details)
    assert any(d["key"] == "links[0].to" and "is required" in d["problem"] for d in details)
    assert str(bad) in info.value.message


# -- filling a registered computer's locality ----------------------------------------
TOPO = files.parse([("t.toml", BASE)])[0]
COMPLETE = [
    ("lan-fills-country-and-continent", "cx", {"lan": "par-1"},
     {"host": None, "lan": "par-1", "country": "fr", "continent": "europe"}, []),
    ("host-fills-everything", "cx", {"host": "fra-1-a"},
     {"host": "fra-1-a", "lan": "fra-1", "country": "de", "continent": "europe"}, []),
    ("declared-computer-fills-from-its-site", "c1", {},
     {"host": "par-1-a", "lan": "par-1", "country": "fr", "continent": "europe"}, []),
    ("unknown-names-are-kept", "cx", {"lan": "lab", "country": "xx"},
     {"host": None, "lan": "lab", "country": "xx", "continent": None}, []),
    ("consistent-full-locality", "cx", {"lan": "par-1", "country": "fr", "continent": "europe"},
     {"host": None, "lan": "par-1", "country": "fr", "continent": "europe"}, []),
    ("lan-contradicts-country", "cx", {"lan": "par-1", "country": "de"}, None, ["country"]),
    ("name-at-wrong-level", "cx", {"lan": "fr"}, None, ["lan"]),
    ("declared-computer-moved", "c1", {"lan": "fra-1"}, None, ["lan"]),
]


@pytest.mark.parametrize("cid, given, expected, bad_fields", [c[1:] for c in COMPLETE],
                         ids=[c[0] for c in COMPLETE])
def test_complete_locality(cid, given, expected, bad_fields):
    locality, problems = TOPO.complete_locality(cid, given)
    assert [p["field"] for p in problems][:len(bad_fields)] == bad_fields
    if expected is not None:
        assert locality == expected


# -- invitations: links that pair their ends --------------------------------------------
PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def _invitation(path, **override):
    import json
    doc = {"peer": "de", "for": "eu", "url": "https://127.0.0.9:9", "principal": "master/eu",
           "token": "tok-1", "ca_certificate": PEM, **override}
    path.write_text(json.dumps(doc))
    return path


def _linked(tmp_path, invitation):
    topo = tmp_path / "t.toml"
    topo.write_text(BASE + f'\n[[links]]\nfrom = "eu"\nto = "de"\nlatency_ms = 12\n'
                           f'invitation = {invitation!r}\n'.replace("'", '"'))
    return topo


def test_an_invitation_is_read_relative_to_its_topology_file(tmp_path):
    (tmp_path / "inv").mkdir()
    _invitation(tmp_path / "inv" / "de-for-eu.json")
    topo = files.load([_linked(tmp_path, "inv/de-for-eu.json")])
    assert topo.links[0].invitations == (str(tmp_path / "inv" / "de-for-eu.json"),)
    found, problems = files.read_invitations(topo, "eu")
    assert problems == []
    assert [(i.peer, i.for_, i.url, i.token) for i in found] == \
        [("de", "eu", "https://127.0.0.9:9", "tok-1")]
    assert files.read_invitations(topo, "de")[0] == []        # it is eu's, not de's


def test_the_topology_url_of_the_inviting_master_wins(tmp_path):
    _invitation(tmp_path / "i.json")
    path = _linked(tmp_path, "i.json")
    path.write_text(path.read_text().replace('name = "de"\n',
                                             'name = "de"\nurl = "https://de.example:8443/"\n'))
    found, _ = files.read_invitations(files.load([path]), "eu")
    assert found[0].url == "https://de.example:8443"


@pytest.mark.parametrize("make, words", [
    (lambda p: None, "cannot read the invitation"),
    (lambda p: p.write_text("{not json"), "is not an invitation (JSON)"),
    (lambda p: p.write_text("[1]"), "is not an invitation"),
    (lambda p: _invitation(p, token=""), "lacks token"),
    (lambda p: _invitation(p, peer="far"), "invites 'eu' to 'far', but the link joins"),
    (lambda p: _invitation(p, ca_certificate="nope"), "not a PEM certificate"),
], ids=["missing", "not-json", "not-object", "no-token", "wrong-ends", "bad-pem"])
def test_a_bad_invitation_names_the_link_and_the_file(tmp_path, make, words):
    inv = tmp_path / "i.json"
    make(inv)
    with pytest.raises(InvalidInput) as err:
        files.load([_linked(tmp_path, "i.json")])
    detail = err.value.details[0]
    assert detail["key"] == "links[0].invitation" and detail["line"]
    assert str(inv) in detail["problem"] and words in detail["problem"]


@pytest.mark.parametrize("value, words", [
    ("3", "must be the path of an invitation file"),
    ('["a.json", "b.json", "c.json"]', "at most two invitations"),
])
def test_an_invitation_key_of_the_wrong_shape_is_refused(tmp_path, value, words):
    topo = tmp_path / "t.toml"
    topo.write_text(BASE + f'\n[[links]]\nfrom = "eu"\nto = "de"\nlatency_ms = 1\n'
                           f'invitation = {value}\n')
    with pytest.raises(InvalidInput) as err:
        files.load([topo])
    assert words in err.value.details[0]["problem"]
