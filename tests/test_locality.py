"""Locality relation of two computers: innermost shared level, unknown never equal."""
import pytest

from slapfed.topology.locality import distance, relation, shares

PARIS_A = {"host": "h1", "lan": "par-lan", "country": "fr", "continent": "europe"}
PARIS_B = {"host": "h2", "lan": "par-lan", "country": "fr", "continent": "europe"}
LYON = {"host": "h3", "lan": "lyon-lan", "country": "fr", "continent": "europe"}
BERLIN = {"host": "h4", "lan": "ber-lan", "country": "de", "continent": "europe"}
TOKYO = {"host": "h5", "lan": "tyo-lan", "country": "jp", "continent": "asia"}
UNKNOWN = {"host": None, "lan": None, "country": None, "continent": None}


@pytest.mark.parametrize("a,b,rel,dist", [
    (PARIS_A, PARIS_A, "host", 0),
    (PARIS_A, PARIS_B, "lan", 1),
    (PARIS_A, LYON, "country", 2),
    (PARIS_A, BERLIN, "continent", 3),
    (PARIS_A, TOKYO, "none", 4),
    (UNKNOWN, UNKNOWN, "none", 4),
    (PARIS_A, {"continent": "europe"}, "continent", 3),
], ids=["same-host", "same-lan", "same-country", "same-continent", "far", "unknown", "partial"])
def test_relation_is_the_innermost_shared_level(a, b, rel, dist):
    assert relation(a, b) == rel == relation(b, a)
    assert distance(a, b) == dist


@pytest.mark.parametrize("level,expected", [("host", False), ("lan", True), ("country", True),
                                            ("continent", True)])
def test_sharing_a_lan_implies_sharing_outer_levels(level, expected):
    assert shares(PARIS_A, PARIS_B, level) is expected
