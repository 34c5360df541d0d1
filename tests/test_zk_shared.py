"""Sealed values of shared instances, below the processes: the master names each shared
instance's own requester in its host's desired state (and follows a renewed
certificate), the host's node seals each shared instance's secrets to that requester
for that shared instance's id (withheld without one), the master stores only the sealed
text, and the cdn-sites recipe puts the values its release declared secret apart."""
import json

import pytest
import zc.buildout
from test_zk import identity

from slapfed import services as svc
from slapfed.ca import seal
from slapfed.core import sealed
from slapfed.core.errors import InvalidInput
from slapfed.core.states import STARTED
from slapfed.core.wire import ComputerRegistration, InstanceRequest, PartitionReport, Supply
from slapfed.node.plan import PartitionRecord
from slapfed.node.sealing import Sealer, reseal_due, seal_shared, sealing_mark

URL = "/srv/releases/cdn/software.cfg"
ALICE, BOB, CAROL = "person/alice", "person/bob", "person/carol"


@pytest.fixture(scope="module")
def people():
    """(private key, recipient) of alice, bob and carol."""
    return {who: identity(who) for who in (ALICE, BOB, CAROL)}


@pytest.fixture
def rt(master_runtime, master_factories):
    svc.register_computer(master_runtime, ComputerRegistration.from_json(
        master_factories.computer("c1", 3)))
    svc.supply(master_runtime, "c1", Supply(URL))
    return master_runtime


def request(rt, requester, reference, recipient, **extra):
    return svc.request_instance(rt, InstanceRequest.from_json(
        {"reference": reference, "software_url": URL, "requester": requester, **extra}),
        recipient)[1]


def host_entry(rt, renderer=None, known=()):
    serial, body = svc.desired_state(rt, "c1", known, renderer)
    return serial, next(p["instance"] for p in json.loads(body)["partitions"]
                        if p["instance"] and p["instance"]["reference"] == "front")


# -- the master names each shared instance's own requester ------------------------------
SITES = [
    # (who requests the site, with a certificate?, whose certificate the host's node gets)
    (ALICE, True, ALICE),          # the host's own owner: hers, as her site's requester
    (BOB, True, BOB),              # another tenant: his, never the host's requester's
    (BOB, False, None),            # requested without a certificate: none (withheld)
]


@pytest.mark.parametrize("requester, with_cert, recipient", SITES,
                         ids=["owners-site", "tenants-site", "no-certificate"])
def test_the_desired_state_names_each_shared_instance_s_own_requester(rt, people, requester,
                                                                      with_cert, recipient):
    front = request(rt, ALICE, "front", people[ALICE][1], open_to=[BOB])
    site = request(rt, requester, "site", people[requester][1] if with_cert else None,
                   shared=True)
    assert site["host_instance"] == front["id"]
    _serial, entry = host_entry(rt)
    assert entry["recipient"] == people[ALICE][1]                 # the host's own
    names = entry.get("shared_recipients", {})
    assert names.get(site["id"]) == (people[recipient][1] if recipient else None)
    # kept out of what the partition's buildout sees
    assert all(set(s) == {"id", "reference", "parameters"} for s in entry["shared_instances"])


def test_a_shared_requester_s_renewed_certificate_reaches_the_host_s_node(rt, master_db,
                                                                         people):
    renderer = svc.DesiredStateRenderer(master_db)
    try:
        front = request(rt, ALICE, "front", people[ALICE][1], open_to=[BOB])
        site = request(rt, BOB, "site", people[BOB][1], shared=True)
        serial, _entry = host_entry(rt, renderer)
        _key, renewed = identity(BOB)
        again = request(rt, BOB, "site", renewed, shared=True)       # the same request
        assert again["revision"] == site["revision"]
        later, entry = host_entry(rt, renderer, (serial,))
        assert later > serial                       # the host's computer: a new document
        assert entry["shared_recipients"][site["id"]] == renewed
        assert entry["revision"] == svc.show_instance(rt, front["id"])["revision"]
    finally:
        renderer.close()


# -- the host's node seals each shared instance's secrets to its own requester ----------
def test_the_host_s_node_seals_each_site_s_secret_to_that_site_s_requester(people):
    bob_key, bob = people[BOB]
    alice_key, alice = people[ALICE]
    public = {"i-b": {"url": "http://f/b/", "purge-key": "stale"}, "i-c": {"url": "u"},
              "i-d": {"url": "http://f/d/"}}
    secret = {"i-b": {"purge-key": "kb"}, "i-c": {"purge-key": "key-of-c!"},
              "i-d": {"purge-key": "kd"}}
    delegated = {**people[CAROL][1], "instance": "i-origin"}
    out, withheld = seal_shared(Sealer(), public, secret, {"i-b": bob, "i-d": delegated})
    assert out["i-b"]["url"] == "http://f/b/" and sealed.is_sealed(out["i-b"]["purge-key"])
    assert seal.open_sealed(out["i-b"]["purge-key"], bob_key,
                            sealed.connection_context("i-b", "purge-key")) == "kb"
    # not the host's requester's, and bound to the site's id and parameter
    for key, context in ((alice_key, "connection/i-b/purge-key"),
                         (bob_key, "connection/i-host/purge-key"),
                         (bob_key, "connection/i-b/url")):
        with pytest.raises(seal.SealedValueInvalid):
            seal.open_sealed(out["i-b"]["purge-key"], key, context)
    # no recipient for i-c: withheld, never sent in clear
    assert out["i-c"] == {"url": "u"} and set(withheld) == {"i-c"}
    assert "no requester certificate" in withheld["i-c"]["purge-key"]
    assert "key-of-c!" not in json.dumps(out)   # (not base64: never in sealed text)
    # one delegated here is bound to its id at the origin
    assert seal.open_sealed(out["i-d"]["purge-key"], people[CAROL][0],
                            "connection/i-origin/purge-key") == "kd"


def test_secrets_only_for_a_site_with_no_public_values_still_reach_it(people):
    out, withheld = seal_shared(Sealer(), {}, {"i-b": {"token": "t"}}, {"i-b": people[BOB][1]})
    assert withheld == {} and sealed.is_sealed(out["i-b"]["token"])
    assert seal_shared(Sealer(), {"i-b": {"url": "u"}}, {}, {}) == ({"i-b": {"url": "u"}}, {})


def _host(own="fa", shared=None, iid="i-1"):
    inst = {"id": iid, "revision": 3, "recipient": {"certificate": "-", "fingerprint": own}}
    if shared:
        inst["shared_recipients"] = {sid: {"certificate": "-", "fingerprint": fp}
                                     for sid, fp in shared.items()}
    return inst


@pytest.mark.parametrize("sealed_for, now, due", [
    (_host(), _host(), False),
    (_host(shared={"i-b": "fb"}), _host(shared={"i-b": "fb"}), False),
    (_host(shared={"i-b": "fb"}), _host(shared={"i-b": "fb2"}), True),      # renewed
    (_host(shared={"i-b": "fb"}), _host(shared={"i-b": "fb", "i-c": "fc"}), True),
    (_host(), _host(shared={"i-b": "fb"}), True),
    (_host(shared={"i-b": "fb"}), _host(own="fa2", shared={"i-b": "fb"}), True),
], ids=["plain", "same-sites", "site-renewed", "site-added", "first-site", "host-renewed"])
def test_a_host_publishes_again_when_a_shared_requester_s_certificate_changed(sealed_for,
                                                                              now, due):
    record = PartitionRecord("i-1", 3, STARTED, sealed_for=sealing_mark(sealed_for))
    assert reseal_due({"partitions": [{"id": "p0", "instance": now}]},
                      {"p0": record}) == (["p0"] if due else [])
    assert sealing_mark(_host()) == "fa"       # a partition hosting none: as before


# -- the master stores what the host's node sealed and nothing else ---------------------
def test_the_master_stores_a_site_s_sealed_value_and_refuses_a_malformed_one(rt, people):
    bob_key, bob = people[BOB]
    front = request(rt, ALICE, "front", people[ALICE][1], open_to=[BOB])
    site = request(rt, BOB, "site", bob, shared=True)
    shared, _ = seal_shared(Sealer(), {site["id"]: {"url": "http://f/site/"}},
                            {site["id"]: {"purge-key": "hunter2"}}, {site["id"]: bob})
    report = {"instance_id": front["id"], "revision": front["revision"], "state": STARTED,
              "connection": {"url": "http://f/"}}
    part = front["placement"]["partition"]
    with pytest.raises(InvalidInput) as refused:
        PartitionReport.from_json({**report, "shared_connections": {
            site["id"]: {"purge-key": sealed.PREFIX + "not*b64"}}})
    assert f"{site['id']}.purge-key" in json.dumps(refused.value.details)
    svc.report_partition(rt, "c1", part, PartitionReport.from_json(
        {**report, "shared_connections": shared}))
    shown = svc.show_instance(rt, site["id"])
    assert "hunter2" not in json.dumps(shown)
    assert seal.open_sealed(shown["connection"]["purge-key"], bob_key,
                            sealed.connection_context(site["id"], "purge-key")) == "hunter2"
    assert shown["connection"]["url"] == "http://f/site/"


# -- the cdn-sites recipe puts declared secrets apart ------------------------------------
def _sites_recipe(tmp_path, shared, partition=None, **options):
    from slapfed.recipe_cdn import CdnSitesRecipe
    part = {"shared-instances": json.dumps(shared),
            "shared-connection-file": str(tmp_path / "shared.json"),
            "secret-shared-connection-file": str(tmp_path / "secret-shared.json")}
    if partition is not None:
        part = partition
    return CdnSitesRecipe({"partition": part}, "sites", {
        "recipe": "slapfed:cdn-sites", "table": str(tmp_path / "table.json"),
        "url": "http://f/", "purge-keys": str(tmp_path / "keys.json"), **options})


def _site(sid, name, **params):
    return {"id": sid, "reference": name, "parameters": {"backend": "http://b/", **params}}


def test_the_sites_recipe_seals_nothing_itself_and_keeps_each_site_s_key(tmp_path):
    shared = [_site("i-a", "a"), _site("i-b", "b")]
    _sites_recipe(tmp_path, shared, secret="purge-key").install()
    public = json.loads((tmp_path / "shared.json").read_text())
    secret = json.loads((tmp_path / "secret-shared.json").read_text())
    assert public["i-a"] == {"url": "http://f/a/", "site": "a", "backend": "http://b/"}
    assert set(secret) == {"i-a", "i-b"} and secret["i-a"]["purge-key"] != \
        secret["i-b"]["purge-key"]
    assert (tmp_path / "secret-shared.json").stat().st_mode & 0o077 == 0
    assert secret["i-a"]["purge-key"] not in (tmp_path / "table.json").read_text()
    # a new site: the others keep their key
    _sites_recipe(tmp_path, shared + [_site("i-c", "c")], secret="purge-key").install()
    again = json.loads((tmp_path / "secret-shared.json").read_text())
    assert again["i-a"] == secret["i-a"] and set(again) == {"i-a", "i-b", "i-c"}


def test_the_sites_recipe_refuses_rather_than_publish_a_site_s_secret_in_clear(tmp_path):
    partition = {"shared-instances": json.dumps([_site("i-a", "a")]),
                 "shared-connection-file": str(tmp_path / "shared.json")}
    with pytest.raises(zc.buildout.UserError, match="secret-shared-connection-file"):
        _sites_recipe(tmp_path, [], partition, secret="purge-key").install()
    assert not (tmp_path / "shared.json").exists() and not (tmp_path / "table.json").exists()
