"""The SLA language on the wire (core.sla through core.wire): every key parses, fallbacks keep
their order, capabilities register, and every problem is listed by field."""
import pytest

from slapfed.core.errors import InvalidInput
from slapfed.core.sla import parse_sla
from slapfed.core.wire import ComputerRegistration, InstanceRequest

URL = "/srv/releases/hello/software.cfg"


@pytest.mark.parametrize("sla, described", [
    ({}, ["anywhere"]),
    ({"computer_guid": "c1"}, ["computer_guid=c1"]),
    ({"host": "h1"}, ["host=h1"]),
    ({"lan": "lan-a"}, ["lan=lan-a"]),
    ({"country": "fr"}, ["country=fr"]),
    ({"continent": "europe"}, ["continent=europe"]),
    ({"capability": "gpu"}, ["capability=gpu"]),
    ({"label.disk": "ssd"}, ["label.disk=ssd"]),
    ({"same_host": "db"}, ["same_host(db)"]),
    ({"same_lan": "db"}, ["same_lan(db)"]),
    ({"same_country": "db"}, ["same_country(db)"]),
    ({"same_continent": "db"}, ["same_continent(db)"]),
    ({"different_host": "db"}, ["different_host(db)"]),
    ({"different_lan": "db"}, ["different_lan(db)"]),
    ({"different_country": "db"}, ["different_country(db)"]),
    ({"different_continent": "db"}, ["different_continent(db)"]),
    ({"different_host": ["db-2", "db-1"]}, ["different_host(db-1), different_host(db-2)"]),
    ({"lan": "l", "label.a": "1", "same_country": "db", "capability": "gpu"},
     ["lan=l, capability=gpu, label.a=1, same_country(db)"]),
    ([{"continent": "europe"}, {}], ["continent=europe", "anywhere"]),
    ([{"lan": "a"}, {"lan": "b"}, {"same_lan": "x"}], ["lan=a", "lan=b", "same_lan(x)"]),
], ids=["empty", "computer_guid", "host", "lan", "country", "continent", "capability", "label",
        "same_host", "same_lan", "same_country", "same_continent", "different_host",
        "different_lan", "different_country", "different_continent", "two-references",
        "combination", "fallback-anywhere", "three-alternatives"])
def test_every_sla_key_parses(sla, described):
    req = InstanceRequest.from_json({"reference": "web-1", "software_url": URL, "sla": sla})
    assert [a.describe() for a in req.sla_terms().alternatives] == described
    again = InstanceRequest.from_json(req.to_json())
    assert again == req and again.sla_terms() == req.sla_terms()


@pytest.mark.parametrize("sla, fields", [
    ({"planet": "mars"}, {"sla.planet"}),
    ({"lan": 3, "host": ""}, {"sla.lan", "sla.host"}),
    ({"capability": "has space"}, {"sla.capability"}),
    ({"label.": "x", "label.ok": 1}, {"sla.label.", "sla.label.ok"}),
    ({"same_lan": ""}, {"sla.same_lan"}),
    ({"same_lan": []}, {"sla.same_lan"}),
    ({"different_host": ["a", 3]}, {"sla.different_host"}),
    ({"same_lan": "web-1"}, {"sla.same_lan"}),
    ({"same_host": "db", "different_lan": "db"}, {"sla.different_lan"}),
    ([], {"sla"}),
    ("lan=a", {"sla"}),
    ([{"lan": "a"}, "anywhere", {"planet": "x"}], {"sla[1]", "sla[2].planet"}),
    ([{}] * 9, {"sla"}),
], ids=["unknown-key", "bad-values", "bad-capability", "bad-labels", "empty-reference",
        "no-reference", "reference-not-string", "names-itself", "contradiction", "empty-array",
        "not-object", "bad-alternatives", "too-many-alternatives"])
def test_every_sla_problem_is_listed(sla, fields):
    with pytest.raises(InvalidInput) as info:
        InstanceRequest.from_json({"reference": "web-1", "software_url": URL, "sla": sla,
                                   "state": "nope"})
    assert {d["field"] for d in info.value.details} == fields | {"state"}


def test_parse_sla_raises_alone_with_every_problem():
    with pytest.raises(InvalidInput) as info:
        parse_sla({"planet": "x", "moon": "y"})
    assert len(info.value.details) == 2 and "(and 1 more)" in info.value.message


@pytest.mark.parametrize("body, caps, part_caps", [
    ({"id": "c1"}, (), ()),
    ({"id": "c1", "capabilities": ["gpu", "gpu", "fast"]}, ("fast", "gpu"), ()),
    ({"id": "c1", "partitions": [{"id": "p0", "address": "127.0.0.1", "port_base": 1000,
                                  "capabilities": ["ssd"]}]}, (), ("ssd",)),
], ids=["none", "computer-sorted-unique", "partition"])
def test_capabilities_register(body, caps, part_caps):
    reg = ComputerRegistration.from_json(body)
    assert reg.capabilities == caps
    if reg.partitions:
        assert reg.partitions[0].capabilities == part_caps
    assert ComputerRegistration.from_json(reg.to_json()) == reg


def test_bad_capabilities_are_listed():
    with pytest.raises(InvalidInput) as info:
        ComputerRegistration.from_json({
            "id": "c1", "capabilities": ["ok", "not ok", 3],
            "partitions": [{"id": "p0", "address": "127.0.0.1", "port_base": 1000,
                            "capabilities": "gpu"}]})
    assert {d["field"] for d in info.value.details} == {
        "capabilities[1]", "capabilities[2]", "partitions[0].capabilities"}
