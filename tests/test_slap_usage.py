"""SlapOS usage journals (SLAP's useComputer, what ``slapos node report`` sends): the pure
reader of core.slap_usage, and the stock client's reportUsage recorded as the node's usage
report against the instances on the partitions it names, once, or refused naming the
movement with nothing written."""
import pytest

from conftest import last_tid
from slapfed.core import slap_usage
from slapfed.core.errors import InvalidInput

slap_lib = pytest.importorskip("slapos.slap")
from slapos.util import dumps  # noqa: E402
from test_slap import COMPUTER, SR, layout  # noqa: E402


def movement(resource="CPU Consumption", reference="slappart0", quantity="42.5",
             extra="<title>CPU</title><price>0.0</price><VAT>None</VAT>"):
    parts = [f"<resource>{resource}</resource>" if resource is not None else "",
             f"<reference>{reference}</reference>" if reference is not None else "",
             f"<quantity>{quantity}</quantity>" if quantity is not None else ""]
    return "<movement>" + parts[0] + extra + parts[1] + parts[2] + "</movement>"


def journal(*movements, stamp="2026-12-02 at 10:00:00"):
    """A journal as slapgrid's asXML builds it."""
    return ('<?xml version="1.0"?><journal><transaction type="Sale Packing List">'
            "<title>Resource consumptions</title><start_date></start_date>"
            f"<stop_date>{stamp}</stop_date><reference>{COMPUTER}</reference>"
            "<currency></currency><payment_mode></payment_mode><category></category>"
            '<arrow type="Administration"><source></source><destination></destination>'
            "</arrow>" + "".join(movements) + "</transaction></journal>")


# -- the pure reader ------------------------------------------------------------------
def test_movements_are_read_and_added_up_per_partition_and_resource():
    found = slap_usage.movements(journal(
        movement(), movement(quantity="1"), movement("Memory Usage", "slappart1", "2e3"),
        movement("cpu_seconds", "slappart1", "7")))
    assert [(m.index, m.partition, m.quantity) for m in found] == [
        (0, "slappart0", 42.5), (1, "slappart0", 1.0), (2, "slappart1", 2000.0),
        (3, "slappart1", 7.0)]
    assert slap_usage.per_partition(found) == {
        "slappart0": {"x-cpu-consumption": 43.5},
        "slappart1": {"x-memory-usage": 2000.0, "cpu_seconds": 7.0}}


@pytest.mark.parametrize("given,recorded", [
    ("CPU Consumption", "x-cpu-consumption"),
    ("service_module/cpu_load_percent", "x-service_module-cpu_load_percent"),
    ("memory_peak_bytes", "memory_peak_bytes"),          # slapfed's own names as given
    ("x-requests", "x-requests"),
    ("***", "x-unnamed"),
    ("${buildout:directory}\r\n[x]", "x-buildout-directory-x"),   # data, nothing more
])
def test_a_slapos_resource_is_recorded_under_a_name_slapfed_accepts(given, recorded):
    assert slap_usage.resource_name(given) == recorded


def test_a_long_resource_name_keeps_its_start_and_a_digest_of_the_whole():
    a, b = "Network Traffic " * 5 + "in", "Network Traffic " * 5 + "out"
    na, nb = slap_usage.resource_name(a), slap_usage.resource_name(b)
    assert na != nb and len(na) == len(nb) == 2 + slap_usage.CUSTOM_MAX
    assert na.startswith("x-network-traffic-network")
    from slapfed.core.accounting import CUSTOM_RE
    assert CUSTOM_RE.match(na) and CUSTOM_RE.match(nb)


def test_an_empty_journal_has_no_movements():
    assert slap_usage.movements("<journal/>") == []
    assert slap_usage.movements(journal()) == []


@pytest.mark.parametrize("text,problem", [
    ('<!DOCTYPE j [<!ENTITY a "aaaa">]><journal/>', "DOCTYPE"),
    ("<marshal/>", "not a <journal>"),
    ("<journal><transaction>", "not well-formed"),
    (journal(movement(quantity=None)), "movement 0 has no <quantity>"),
    (journal(movement(), movement(reference=None)), "movement 1 has no <reference>"),
    (journal(movement(resource="")), "movement 0 has no <resource>"),
    (journal(movement(quantity="-1")), "at least 0"),
    (journal(movement(quantity="nan")), "finite"),
    (journal(movement(quantity="inf")), "finite"),
    (journal(movement(quantity="lots")), "'lots'"),
    (journal(movement(extra="<quantity>1</quantity>")), "gives <quantity> twice"),
    (journal(movement(resource="r" * 2000)), "longer than"),
    ("<journal>" + "<a>" * 20 + "</a>" * 20 + "</journal>", "nested deeper"),
    ("<journal><transaction>" + "<movement/>" * (slap_usage.MAX_MOVEMENTS + 1)
     + "</transaction></journal>", "movements"),
    ("<journal>" + " " * slap_usage.MAX_BYTES + "</journal>", "longer than"),
])
def test_a_bad_journal_is_refused_naming_the_problem(text, problem):
    with pytest.raises(InvalidInput) as err:
        slap_usage.movements(text)
    assert problem in str(err.value)
    assert err.value.details[0]["field"] == "use_string"


def test_the_same_journal_has_the_same_report_id_and_another_another():
    one, two = journal(movement()), journal(movement(), stamp="2026-12-02 at 10:05:00")
    assert slap_usage.report_id("c", one) == slap_usage.report_id("c", one)
    assert slap_usage.report_id("c", one) != slap_usage.report_id("c", two)
    assert slap_usage.report_id("c", one) != slap_usage.report_id("d", one)


# -- through the stock client ------------------------------------------------------------
@pytest.fixture
def usage_world(master_app, serve_app, api):
    url = serve_app(master_app) + "/slap/"
    conn = slap_lib.slap()
    conn.initializeConnection(url)
    conn.registerComputer(COMPUTER).updateConfiguration(dumps(layout()))
    conn.registerSupply().supply(SR, COMPUTER)
    asked = conn.registerOpenOrder().request(SR, "web-1",
                                             filter_kw={"computer_guid": COMPUTER})
    return conn, asked.getId(), asked.getInstanceGuid()


def _free(pid):
    return "slappart1" if pid != "slappart1" else "slappart2"


def _usage(api, iid):
    resp = api.get(f"/api/v1/instances/{iid}/usage")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert {day["where"]["kind"] for day in resp.json["days"]} <= {"computer"}
    return {(u["resource"], u["quantity"]) for u in resp.json["totals"]}


def test_a_stock_nodes_journal_is_recorded_against_the_partitions_instance_once(
        usage_world, api, master_db):
    conn, pid, iid = usage_world
    computer = conn.registerComputer(COMPUTER)
    sent = journal(movement(reference=pid), movement("Memory Usage", pid, "1024"),
                   movement(reference=pid, quantity="0.5"))
    computer.reportUsage(sent)
    assert _usage(api, iid) == {("x-cpu-consumption", 43.0), ("x-memory-usage", 1024.0)}
    before = last_tid(master_db)
    computer.reportUsage(sent)                            # the node retrying: a duplicate
    assert last_tid(master_db) == before
    assert _usage(api, iid) == {("x-cpu-consumption", 43.0), ("x-memory-usage", 1024.0)}
    computer.reportUsage(journal(movement(reference=pid, quantity="7"),
                                 stamp="2026-12-02 at 10:05:00"))
    assert ("x-cpu-consumption", 50.0) in _usage(api, iid)


def test_a_journal_sent_again_after_its_partition_was_freed_is_still_a_duplicate(
        usage_world, api, master_db):
    conn, pid, iid = usage_world
    sent = journal(movement(reference=pid))
    conn.registerComputer(COMPUTER).reportUsage(sent)
    part = conn.registerComputerPartition(COMPUTER, pid)
    conn.registerOpenOrder().request(SR, "web-1", state="destroyed")
    part.stopped()
    part.destroyed()                                    # the partition hosts nothing now
    before = last_tid(master_db)
    resp = api.post("/slap/useComputer", data={"computer_id": COMPUTER, "use_string": sent})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert last_tid(master_db) == before and _usage(api, iid) == {("x-cpu-consumption", 42.5)}


def test_an_empty_journal_is_accepted_and_writes_nothing(usage_world, master_db):
    conn, _pid, _iid = usage_world
    before = last_tid(master_db)
    conn.registerComputer(COMPUTER).reportUsage(journal())
    assert last_tid(master_db) == before


@pytest.mark.parametrize("bad,problem", [
    (lambda pid: journal(movement(reference=pid), movement(reference=_free(pid))),
     "movement 1 names partition {free} of computer comp-1, which hosts no instance"),
    (lambda pid: journal(movement(reference="../../etc")),
     "movement 0 names '../../etc', which is not a partition of computer comp-1"),
    (lambda pid: journal(movement(reference="${buildout:x}\r\n[part]")),
     "movement 0 names '${{buildout:x}}\\n[part]', which is not a partition"),  # XML: CRLF→LF
    (lambda pid: journal(movement(reference=pid, quantity="-3")), "at least 0"),
    (lambda pid: '<!DOCTYPE j [<!ENTITY a "a">]><journal/>', "DOCTYPE"),
])
def test_a_bad_journal_is_refused_naming_the_movement_and_writes_nothing(
        usage_world, api, master_db, bad, problem):
    conn, pid, iid = usage_world
    before = last_tid(master_db)
    resp = api.post("/slap/useComputer", data={"computer_id": COMPUTER,
                                               "use_string": bad(pid)})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = resp.json["error"]
    assert error["code"] == "invalid_input"
    assert problem.format(free=_free(pid)) in error["message"]
    assert error["details"][0]["field"] == "use_string"
    assert last_tid(master_db) == before and _usage(api, iid) == set()


def test_a_journal_for_an_unknown_computer_is_404(usage_world, api, master_db):
    before = last_tid(master_db)
    resp = api.post("/slap/useComputer", data={"computer_id": "comp-9",
                                               "use_string": journal(movement())})
    assert resp.status_code == 404 and last_tid(master_db) == before
