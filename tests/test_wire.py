"""Table tests of the wire parsers (core.wire): valid bodies parse, invalid ones list
every problem by field."""
import pytest

from slapfed.core.errors import InvalidInput
from slapfed.core.wire import (
    ComputerRegistration, InstanceRequest, LostVerdict, MovedReport, PartitionReport, Promotion,
    ReplicaInvitation, ReplicaRegistration, SoftwareReport, StateChange, Supply, WipeRequest,
    software_hash,
)

URL = "/srv/releases/hello/software.cfg"


def problems_of(parser, body):
    with pytest.raises(InvalidInput) as info:
        parser(body)
    return {d["field"] for d in info.value.details}


# -- InstanceRequest ------------------------------------------------------------------
@pytest.mark.parametrize("body, expected", [
    ({"reference": "web-1", "software_url": URL},
     dict(software_type="default", parameters={}, sla={}, state="started", shared=False,
          requester="anonymous", parent=None)),
    ({"reference": "web-1", "software_url": "https://example.org/sw.cfg", "software_type": "db",
      "parameters": {"port": 8080, "name": "x", "tags": ["a"]}, "sla": {"lan": "lan-a"},
      "state": "stopped", "shared": True, "requester": "alice", "parent": "i-123"},
     dict(software_type="db", parameters={"port": 8080, "name": "x", "tags": ["a"]},
          sla={"lan": "lan-a"}, state="stopped", shared=True, requester="alice",
          parent="i-123")),
    ({"reference": "r", "software_url": "file:///srv/sw.cfg", "parameters": None, "sla": None},
     dict(parameters={}, sla={})),
], ids=["defaults", "every-field", "nulls-mean-defaults"])
def test_instance_request_parses(body, expected):
    req = InstanceRequest.from_json(body)
    for key, value in expected.items():
        assert getattr(req, key) == value
    assert InstanceRequest.from_json(req.to_json()) == req


@pytest.mark.parametrize("body, fields", [
    ({}, {"reference", "software_url"}),
    ([], {"body"}),          # not an object: nothing else is read
    ({"reference": "", "software_url": "relative/sw.cfg"}, {"reference", "software_url"}),
    ({"reference": "r", "software_url": URL, "colour": "red"}, {"colour"}),
    ({"reference": "r", "software_url": URL, "state": "running"}, {"state"}),
    ({"reference": "r", "software_url": URL, "software_type": "a b"}, {"software_type"}),
    ({"reference": "r", "software_url": URL, "sla": {"planet": "mars"}}, {"sla.planet"}),
    ({"reference": "r", "software_url": URL, "sla": {"lan": 3}}, {"sla.lan"}),
    ({"reference": "r", "software_url": URL, "parameters": []}, {"parameters"}),
    ({"reference": "r", "software_url": URL, "parameters": {"bad key": 1}},
     {"parameters.bad key"}),
    ({"reference": "r", "software_url": URL, "shared": "yes"}, {"shared"}),
    ({"reference": "r", "software_url": URL, "parent": "../x"}, {"parent"}),
    ({"reference": 5, "software_url": URL, "state": "x", "shared": 1},
     {"reference", "state", "shared"}),
    ({"reference": "r" * 201, "software_url": URL}, {"reference"}),
], ids=["empty", "not-object", "empty-and-relative", "unknown-field", "bad-state", "bad-type",
        "unknown-sla-key", "sla-not-string", "parameters-not-object", "bad-parameter-name",
        "shared-not-bool", "bad-parent", "three-problems-at-once", "reference-too-long"])
def test_instance_request_lists_every_problem(body, fields):
    assert problems_of(InstanceRequest.from_json, body) == fields


# -- StateChange, Supply -------------------------------------------------------------
@pytest.mark.parametrize("parser, body, ok", [
    (StateChange.from_json, {"state": "stopped"}, True),
    (StateChange.from_json, {"state": "paused"}, False),
    (StateChange.from_json, {}, False),
    (Supply.from_json, {"url": URL}, True),
    (Supply.from_json, {"url": URL, "state": "destroyed"}, True),
    (Supply.from_json, {"url": URL, "state": "installed"}, False),
    (Supply.from_json, {"url": "ftp://x"}, False),
], ids=["state-ok", "state-unknown", "state-missing", "supply-ok", "supply-destroyed",
        "supply-bad-state", "supply-bad-url"])
def test_small_bodies(parser, body, ok):
    if ok:
        parser(body)
    else:
        with pytest.raises(InvalidInput):
            parser(body)


# -- the bodies of lost computers and peers, and of replication ------------------------
@pytest.mark.parametrize("parser, body, expected", [
    (LostVerdict.from_json, {}, LostVerdict("", False)),
    (LostVerdict.from_json, {"reason": None, "dry_run": None}, LostVerdict("", False)),
    (LostVerdict.from_json, {"reason": "flooded", "dry_run": True},
     LostVerdict("flooded", True)),
    (LostVerdict.from_json, {"dry_run": "yes"}, {"dry_run"}),
    (LostVerdict.from_json, {"reason": "a\nb", "why": 1}, {"reason", "why"}),
    (WipeRequest.from_json, {}, WipeRequest(None)),
    (WipeRequest.from_json, {"partition": "p0"}, WipeRequest("p0")),
    (WipeRequest.from_json, {"partition": "../p0"}, {"partition"}),
    (MovedReport.from_json, {"instance_id": "i-1", "state": "erased"},
     MovedReport("i-1", "erased")),
    (MovedReport.from_json, {"instance_id": "i-1", "state": "gone"}, {"state"}),
    (MovedReport.from_json, {}, {"instance_id", "state"}),
    (ReplicaInvitation.from_json, {"name": "r1", "ttl": 60.0}, ReplicaInvitation("r1", 60)),
    (ReplicaInvitation.from_json, {"name": "r 1", "ttl": 0}, {"name", "ttl"}),
    (ReplicaRegistration.from_json, {"url": None, "mode": "async"},
     ReplicaRegistration("async", None)),
    (ReplicaRegistration.from_json, {"url": "https://r1:8443", "mode": "sync"},
     ReplicaRegistration("sync", "https://r1:8443")),
    (ReplicaRegistration.from_json, {"url": "ftp://r1", "mode": "both"}, {"url", "mode"}),
    (ReplicaRegistration.from_json, {"url": "http://[", "mode": "sync"}, {"url"}),
    (ReplicaRegistration.from_json, {"url": "https://r1:99999", "mode": "sync"}, {"url"}),
    (ReplicaRegistration.from_json, {"url": "https://:8443", "mode": "sync"}, {"url"}),
    (Promotion.from_json, {}, Promotion()),
    (Promotion.from_json, {"force": True}, {"force"}),
], ids=["lost-empty", "lost-nulls", "lost-full", "lost-bad-flag", "lost-bad-reason",
        "wipe-all", "wipe-one", "wipe-bad-id", "moved-ok", "moved-bad-state",
        "moved-missing", "invite-ok", "invite-bad", "register-no-url", "register-ok",
        "register-bad", "register-bad-ipv6", "register-bad-port", "register-no-host",
        "promote-ok", "promote-unknown"])
def test_lost_and_replication_bodies(parser, body, expected):
    if isinstance(expected, set):
        assert problems_of(parser, body) == expected
    else:
        assert parser(body) == expected


def test_a_body_without_fields_says_it_has_none():
    with pytest.raises(InvalidInput) as info:
        Promotion.from_json({"force": True})
    assert info.value.details == [{"field": "force",
                                   "problem": "unknown field (this object has none)"}]


def test_an_empty_software_url_is_said_in_words():
    with pytest.raises(InvalidInput) as info:
        InstanceRequest.from_json({"reference": "a", "software_url": ""})
    assert info.value.details == [{"field": "software_url", "problem": "must not be empty"}]


# -- ComputerRegistration -------------------------------------------------------------
def test_computer_registration_parses_partitions():
    reg = ComputerRegistration.from_json({
        "id": "c1", "lan": "lan-a", "labels": {"disk": "ssd"},
        "partitions": [{"id": "p0", "address": "127.0.0.2", "port_base": 20000},
                       {"id": "p1", "address": "::1", "port_base": 20010, "port_count": 5}]})
    assert reg.lan == "lan-a" and reg.labels == {"disk": "ssd"}
    assert [(p.id, p.port_count) for p in reg.partitions] == [("p0", 10), ("p1", 5)]
    assert ComputerRegistration.from_json(reg.to_json()) == reg


@pytest.mark.parametrize("body, fields", [
    ({"partitions": []}, {"id"}),
    ({"id": "c 1"}, {"id"}),
    ({"id": "c1", "partitions": [{"id": "p0", "address": "nowhere", "port_base": 0}]},
     {"partitions[0].address", "partitions[0].port_base"}),
    ({"id": "c1", "partitions": [{"id": "p0", "address": "127.0.0.2", "port_base": 1},
                                 {"id": "p0", "address": "127.0.0.3", "port_base": 2}]},
     {"partitions[1].id"}),
    ({"id": "c1", "partitions": [{"id": "p0", "address": "127.0.0.2", "port_base": 1,
                                  "size": 3}]}, {"partitions[0].size"}),
    ({"id": "c1", "labels": {"k": ""}}, {"labels.k"}),
], ids=["missing-id", "bad-id", "bad-address-and-port", "duplicate-partition",
        "unknown-partition-field", "empty-label"])
def test_computer_registration_problems(body, fields):
    assert problems_of(ComputerRegistration.from_json, body) == fields


# -- node reports ------------------------------------------------------------------
def test_software_report_sorts_and_dedups_types():
    rep = SoftwareReport.from_json({"status": "installed", "software_types": ["web", "db", "web"]})
    assert rep.software_types == ("db", "web") and rep.log_tail == ""


@pytest.mark.parametrize("body, fields", [
    ({}, {"status"}),
    ({"status": "pending"}, {"status"}),
    ({"status": "failed", "software_types": ["ok", "not ok"]}, {"software_types[1]"}),
], ids=["missing-status", "status-not-reportable", "bad-type-name"])
def test_software_report_problems(body, fields):
    assert problems_of(SoftwareReport.from_json, body) == fields


def test_partition_report_parses_promises():
    rep = PartitionReport.from_json({
        "instance_id": "i-1", "revision": 3, "state": "started",
        "connection": {"url": "http://127.0.0.2:8080"},
        "promises": [{"name": "http", "ok": True}, {"name": "disk", "ok": False,
                                                    "message": "full"}]})
    assert rep.revision == 3 and rep.promises[1].message == "full"
    assert PartitionReport.from_json(rep.to_json()) == rep


@pytest.mark.parametrize("body, fields", [
    ({}, {"instance_id", "revision", "state"}),
    ({"instance_id": "i-1", "revision": -1, "state": "started"}, {"revision"}),
    ({"instance_id": "i-1", "revision": True, "state": "pending"}, {"revision", "state"}),
    ({"instance_id": "i-1", "revision": 1, "state": "started", "promises": [{"ok": True}]},
     {"promises[0].name"}),
], ids=["empty", "negative-revision", "bool-revision-and-bad-state", "promise-without-name"])
def test_partition_report_problems(body, fields):
    assert problems_of(PartitionReport.from_json, body) == fields


def test_partition_report_carries_shared_connections():
    rep = PartitionReport.from_json({
        "instance_id": "i-1", "revision": 2, "state": "started",
        "shared_connections": {"i-a": {"url": "http://127.0.0.2:8080/a/", "site": "a"},
                               "i-b": {"error": "no backend"}}})
    assert rep.shared_connections["i-a"]["site"] == "a"
    assert PartitionReport.from_json(rep.to_json()) == rep
    bare = PartitionReport.from_json({"instance_id": "i-1", "revision": 2, "state": "started"})
    assert bare.shared_connections == {}


BASE = {"instance_id": "i-1", "revision": 1, "state": "started"}


@pytest.mark.parametrize("shared, fields", [
    (["i-a"], {"shared_connections"}),
    ({"not an id": {"url": "x"}}, {"shared_connections.not an id"}),
    ({"i-a": "http://x"}, {"shared_connections.i-a"}),
    ({"i-a": {"bad key": "x", "ok": 1}, "i-b": {"url": "fine"}},
     {"shared_connections.i-a.bad key"}),
    ({"i-a": {"big": "x" * 300_000}}, {"shared_connections.i-a"}),
    ({"i-a": None, "-b": {}}, {"shared_connections.i-a", "shared_connections.-b"}),
], ids=["not-an-object", "bad-id", "value-not-an-object", "bad-parameter-name",
        "too-large", "two-problems-at-once"])
def test_partition_report_shared_connection_problems(shared, fields):
    assert problems_of(PartitionReport.from_json, {**BASE, "shared_connections": shared}) \
        == fields


def test_software_hash_is_stable_and_short():
    assert software_hash(URL) == software_hash(URL)
    assert software_hash(URL) != software_hash(URL + "x")
    assert len(software_hash(URL)) == 32


# -- the declarations behind the parsers (pydantic) ----------------------------------
@pytest.mark.parametrize("body, field", [
    ({"reference": "r", "software_url": URL, "parent": "i-1\n"}, "parent"),
    ({"reference": "r", "software_url": URL, "software_type": "db\n"}, "software_type"),
    ({"reference": "r\n", "software_url": URL}, "reference"),
    ({"reference": "r", "software_url": URL, "provenance": ["a\n"]}, "provenance[0]"),
    ({"reference": "r", "software_url": URL, "open_to": ["person/bob\n"]}, "open_to[0]"),
], ids=["id", "software-type", "text", "master-name", "principal"])
def test_no_pattern_takes_a_trailing_line_break(body, field):
    assert problems_of(InstanceRequest.from_json, body) == {field}


@pytest.mark.parametrize("body, problem", [
    ({"reference": "r", "software_url": URL, "state": "running"},
     {"field": "state", "problem": "must be one of started, stopped, destroyed, got 'running'"}),
    ({"reference": "r" * 201, "software_url": URL},
     {"field": "reference", "problem": "is 201 characters long, the limit is 200"}),
    ({"reference": "r", "software_url": URL, "shared": 1},
     {"field": "shared", "problem": "must be true or false, got 1"}),
    ({"reference": "r", "software_url": URL, "parameters": {"recipe": "x"}},
     {"field": "parameters.recipe", "problem": "parameter name 'recipe' is reserved by "
      "buildout (it would turn the section into a part)"}),
], ids=["choice", "length", "boolean", "reserved-key"])
def test_problems_are_worded_for_people(body, problem):
    with pytest.raises(InvalidInput) as info:
        InstanceRequest.from_json(body)
    assert info.value.details == [problem]
    assert info.value.message == f"invalid request: {problem['field']} {problem['problem']}"


def test_unknown_fields_of_nested_bodies_name_what_is_known():
    with pytest.raises(InvalidInput) as info:
        ComputerRegistration.from_json({"id": "c1", "partitions": [
            {"id": "p0", "address": "127.0.0.2", "port_base": 1, "size": 3}]})
    assert info.value.details == [{"field": "partitions[0].size", "problem": "unknown field "
                                   "(known: id, address, port_base, port_count, capabilities)"}]


def test_a_float_with_no_fraction_is_an_integer_and_a_boolean_is_not():
    rep = PartitionReport.from_json({**BASE, "revision": 2.0})
    assert rep.revision == 2 and type(rep.revision) is int
    assert problems_of(PartitionReport.from_json, {**BASE, "revision": True}) == {"revision"}
    assert problems_of(PartitionReport.from_json, {**BASE, "revision": 2.5}) == {"revision"}


def test_wire_values_stay_frozen_dataclasses():
    import dataclasses
    req = InstanceRequest.from_json({"reference": "r", "software_url": URL})
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.reference = "other"
    assert dataclasses.replace(req, requester="person/bob").requester == "person/bob"


def test_evolve_copies_a_checked_value_with_fields_the_master_computed():
    import dataclasses
    from slapfed.core.wire import evolve
    req = InstanceRequest.from_json({"reference": "r", "software_url": URL,
                                     "parameters": {"a": "1"}})
    moved = evolve(req, requester="person/bob", provenance=("root", "eu"))
    assert (moved.requester, moved.provenance) == ("person/bob", ("root", "eu"))
    assert (req.requester, req.provenance) == ("anonymous", ())     # the original is kept
    assert moved == dataclasses.replace(req, requester="person/bob", provenance=("root", "eu"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        moved.requester = "person/eve"
    with pytest.raises(TypeError, match="requestor"):
        evolve(req, requestor="person/bob")


def test_an_answer_that_drifts_from_its_model_is_refused_where_it_is_read():
    from slapfed.core import answers
    good = {"status": "ok", "generation": 1, "version": "0.1.0"}
    assert answers.check(answers.Health, good) is good
    with pytest.raises(InvalidInput) as info:
        answers.check(answers.Health, {**good, "generation": "one"})
    assert info.value.details[0]["field"] == "generation"
    with pytest.raises(InvalidInput) as info:
        answers.check(answers.Health, {"status": "ok", "version": "0.1.0"})
    assert info.value.details[0]["field"] == "generation"


def test_a_newer_masters_added_fields_are_tolerated_but_not_its_wrong_ones():
    from slapfed.core import answers
    good = {"status": "ok", "generation": 1, "version": "0.1.0"}
    newer = {**good, "colour": "red", "zone": {"a": 1}}
    assert answers.check(answers.Health, newer) is newer
    with pytest.raises(InvalidInput) as info:
        answers.check(answers.Health, {**newer, "generation": None})
    assert [d["field"] for d in info.value.details] == ["generation"]
