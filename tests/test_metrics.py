"""Metrics: the master's /metrics (Prometheus text format, admins only) counts requests
by route and code, placement decisions and refusals by plugin, commits and forwards;
the node agent's counts cycles, actions, buildouts, promises and partitions by state.
Over the Flask test client here; a real master and node in test_metrics_e2e.py."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from slapfed import services
from slapfed.core.wire import ComputerRegistration, InstanceRequest, SoftwareReport, Supply, \
    software_hash
from slapfed.master import runtime_of
from slapfed.metrics import CONTENT_TYPE, MasterMetrics, NodeMetrics

URL = "/srv/releases/hello/software.cfg"


def samples(text: str) -> dict:
    """{(sample name, sorted label items): value} of a scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_master_counts_requests_placements_and_commits(api, master_app):
    rt = runtime_of(master_app)
    services.register_computer(rt, ComputerRegistration.from_json(
        {"id": "c1", "partitions": [{"id": "p0", "address": "127.0.3.1", "port_base": 4000}]}))
    services.supply(rt, "c1", Supply(URL))
    services.report_software(rt, "c1", software_hash(URL), SoftwareReport.from_json(
        {"status": "installed", "software_types": ["default"]}))
    body = {"software_url": URL, "requester": "alice"}
    assert api.post("/api/v1/instances", json={**body, "reference": "a"}).status_code == 201
    for _ in range(2):        # no partition left: refused twice, by capacity
        assert api.post("/api/v1/instances", json={**body, "reference": "b"}).status_code == 409
    assert api.get("/api/v1/instances/i-nope").status_code == 404
    assert api.get("/api/v1/health").status_code == 200
    assert api.get("/no/such/route").status_code == 404

    resp = api.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE and CONTENT_TYPE.startswith("text/plain")
    got = samples(resp.get_data(as_text=True))
    req = "slapfed_master_requests_total"
    assert value(got, req, route="/api/v1/instances", method="POST", code="201") == 1
    assert value(got, req, route="/api/v1/instances", method="POST", code="409") == 2
    assert value(got, req, route="/api/v1/instances/<iid>", method="GET", code="404") == 1
    assert value(got, req, route="unmatched", method="GET", code="404") == 1
    assert value(got, "slapfed_master_request_seconds_count", route="/api/v1/instances") == 3
    assert value(got, "slapfed_master_placement_decisions_total", outcome="placed") == 1
    assert value(got, "slapfed_master_placement_decisions_total", outcome="refused") == 2
    assert value(got, "slapfed_master_placement_refusals_total", plugin="capacity") == 2
    # registration, supply, report and the placed request committed (refusals did not)
    assert value(got, "slapfed_master_commit_seconds_count") >= 4
    assert value(got, "slapfed_master_storage_bytes") == rt.db.storage.getSize()
    assert value(got, "slapfed_master_computers", lease="live") == 1
    assert value(got, "slapfed_master_long_polls_open") == 0


def test_two_masters_in_one_process_never_mix_their_counts():
    a, b = MasterMetrics(), MasterMetrics()
    a.request("/x", "GET", 200, 0.01)
    assert value(samples(a.render().decode()), "slapfed_master_requests_total",
                 route="/x", method="GET", code="200") == 1
    assert value(samples(b.render().decode()), "slapfed_master_requests_total",
                 route="/x", method="GET", code="200") == 0


def test_node_metrics_read_gauges_at_scrape():
    m = NodeMetrics()
    states = {"started": 2}
    m.gauges(lambda: [("slapfed_node_partitions", "by state",
                       {(k,): float(v) for k, v in states.items()}, ("state",))])
    assert value(samples(m.render().decode()), "slapfed_node_partitions", state="started") == 2
    states["started"] = 1
    states["stopped"] = 1
    got = samples(m.render().decode())
    assert value(got, "slapfed_node_partitions", state="started") == 1
    assert value(got, "slapfed_node_partitions", state="stopped") == 1


@pytest.mark.parametrize("listen", ["0.0.0.0:9102", "10.0.0.1:1", "127.0.0.1", "x:1",
                                    "127.0.0.1:70000"])
def test_node_metrics_listen_on_loopback_only(listen):
    from click.testing import CliRunner
    from slapfed.cli.main import cli
    out = CliRunner().invoke(cli, ["node", "run", "--root", "/nonexistent",
                                   "--metrics-listen", listen])
    assert out.exit_code == 2 and "loopback HOST:PORT" in out.output
