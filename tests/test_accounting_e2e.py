"""Accounting end to end: a real master process, usage posted over HTTP through the
client a node uses, read back through the real CLI (statement as table, json, csv;
usage of one instance; the price list from a file)."""
import csv
import io
import json

from conftest import SOFTWARE_URL, computer_body, slapfed_cli
from slapfed.client import MasterClient


def test_usage_posted_over_http_is_read_back_by_the_cli(master_server, tmp_path):
    url = master_server()
    admin = MasterClient(url)
    admin.register_computer(computer_body("c1", 2))
    admin.supply("c1", SOFTWARE_URL)
    alice = MasterClient(url, requester="person/alice")
    inst = alice.request("web-1", SOFTWARE_URL)
    pid = inst["placement"]["partition"]

    def report(seq, cpu):
        return {"report_id": f"c1:{seq}", "start": f"2026-11-0{seq}T08:00:00Z",
                "end": f"2026-11-0{seq}T08:01:00Z", "partitions": [{
                    "partition": pid, "instance_id": inst["id"],
                    "usage": [{"resource": "cpu_seconds", "quantity": cpu},
                              {"resource": "x-requests", "quantity": 10}]}]}
    assert admin.report_usage("c1", report(1, 1.5)) == {"accepted": True, "duplicate": False}
    assert admin.report_usage("c1", report(1, 1.5)) == {"accepted": False, "duplicate": True}
    assert admin.report_usage("c1", report(2, 2.25))["accepted"] is True

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"currency": "EUR", "prices": [
        {"resource": "x-requests", "price": "0.01"}]}))
    slapfed_cli("accounting", "prices", "set", str(prices), "--master", url)

    done = slapfed_cli("statement", "--owner", "person/alice", "--period", "2026-11",
                       "--format", "csv", "--master", url)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {(r["resource"], r["quantity"], r["amount"]) for r in rows} == {
        ("cpu_seconds", "3.75", ""), ("x-requests", "20", "0.20")}
    assert {r["where"] for r in rows} == {"c1"} and {r["release"] for r in rows} == {
        SOFTWARE_URL}
    doc = json.loads(slapfed_cli("statement", "--owner", "person/alice", "--period",
                                 "2026-11-02", "--format", "json", "--master", url).stdout)
    assert doc["totals"]["amount"] == "0.10" and doc["currency"] == "EUR"
    table = slapfed_cli("statement", "--owner", "person/alice", "--period", "2026-11",
                        "--master", url).stdout
    assert "amount: 0.20 EUR" in table and "cpu_seconds" in table

    usage = json.loads(slapfed_cli("usage", "web-1", "--as", "person/alice", "--since",
                                   "2026-11-01", "--until", "2026-11-30", "--json",
                                   "--master", url).stdout)
    assert [d["day"] for d in usage["days"]] == ["2026-11-01", "2026-11-02"]
    assert {u["resource"]: u["quantity"] for u in usage["totals"]} == {
        "cpu_seconds": 3.75, "x-requests": 20}
    bad = slapfed_cli("statement", "--owner", "person/alice", "--period", "2026-13",
                      "--master", url, check=False)
    assert bad.returncode == 3 and "period" in bad.stderr
