"""Metrics from real processes: a master over mutual TLS (gunicorn) and a node agent
with --metrics-listen, scraped after real work (a release installed, an instance
started, stopped and started again), the counters checked against what was done."""
import json
from pathlib import Path

import pytest
import requests
from conftest import mtls_master_and_node, slapfed_cli
from prometheus_client.parser import text_string_to_metric_families

from slapfed.procs import wait_for

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
COMPUTER = "metrics-node"

pytestmark = pytest.mark.timeout(300)


def scrape(url: str, **tls) -> dict:
    resp = requests.get(url, timeout=10, **tls)
    resp.raise_for_status()
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scraped, name, **labels):
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def test_master_and_node_metrics_count_what_was_done(tmp_path_factory):
    base = tmp_path_factory.mktemp("metrics")
    with mtls_master_and_node(base, COMPUTER, partitions=2, address_octet=238,
                              node_args=("--metrics-listen", "127.0.0.1:0")) as fed:
        admin, alice = fed["admin"], fed["client"]
        slapfed_cli("supply", HELLO, "--computer", COMPUTER, env=fed["admin_env"])
        inst = json.loads(slapfed_cli("request", "hello-m", HELLO, "--wait", "120", "--json",
                                      env=fed["env"]).stdout)
        assert inst["status"]["state"] == "started"
        slapfed_cli("stop", "hello-m", "--wait", "60", env=fed["env"])
        slapfed_cli("start", "hello-m", "--wait", "60", env=fed["env"])
        refused = slapfed_cli("request", "nowhere", HELLO, "--sla", "continent=asia",
                              env=fed["env"], check=False)
        assert refused.returncode == 5

        # the master, with an admin's certificate; a person's is refused
        master_tls = {"verify": admin.verify, "cert": admin.cert}
        url = fed["url"] + "/metrics"
        assert requests.get(url, timeout=10, verify=alice.verify,
                            cert=alice.cert).status_code == 403
        got = scrape(url, **master_tls)
        req = "slapfed_master_requests_total"
        assert value(got, req, route="/api/v1/instances", method="POST", code="201") == 1
        assert value(got, req, route="/api/v1/instances", method="POST", code="409") == 1
        assert value(got, req, route="/api/v1/instances/<iid>/state", method="PUT",
                     code="200") == 2
        # the node's polls and reports are requests too
        assert value(got, req, route="/api/v1/computers/<cid>/desired-state", method="GET",
                     code="200") >= 1
        assert value(got, req, route="/api/v1/computers/<cid>/partitions/<pid>/status",
                     method="PUT", code="200") >= 3
        assert value(got, "slapfed_master_placement_decisions_total", outcome="placed") == 1
        assert value(got, "slapfed_master_placement_decisions_total", outcome="refused") == 1
        assert value(got, "slapfed_master_placement_refusals_total", plugin="continent") == 1
        assert value(got, "slapfed_master_commit_seconds_count") >= 5
        assert value(got, "slapfed_master_storage_bytes") > 0
        assert value(got, "slapfed_master_computers", lease="live") == 1

        # the node, on its loopback port
        address_file = fed["root"] / "var" / "metrics.address"
        wait_for(address_file.exists, 10, "the node's metrics address")
        node_url = f"http://{address_file.read_text().strip()}/metrics"

        def started_counted():
            g = scrape(node_url)
            return g if value(g, "slapfed_node_partitions", state="started") == 1 else None
        got = wait_for(started_counted, 15, "the node to count its started partition")
        assert value(got, "slapfed_node_actions_total", kind="installsoftware", result="ok") == 1
        assert value(got, "slapfed_node_buildout_seconds_count", what="release",
                     result="ok") == 1
        assert value(got, "slapfed_node_actions_total", kind="instantiate", result="ok") >= 1
        assert value(got, "slapfed_node_actions_total", kind="stop", result="ok") == 1
        assert value(got, "slapfed_node_actions_total", kind="start", result="ok") >= 1
        assert value(got, "slapfed_node_buildout_seconds_count", what="instance",
                     result="ok") >= 1
        assert value(got, "slapfed_node_promises_total", result="ok") >= 1
        assert value(got, "slapfed_node_promises_total", result="failed") == 0
        assert value(got, "slapfed_node_cycle_seconds_count") >= 3
        assert value(got, "slapfed_node_partitions", state="free") == 1
