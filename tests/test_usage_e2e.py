"""End to end, accounting: a real master (mutual TLS) and a real node agent
(``--usage-interval 2``) running a release whose service burns a second of CPU as its
partition's user and writes one line to ``${partition:usage-file}``; the master's
usage of that instance shows what the node measured: the CPU, the peak and integral
of its memory, its disk, the instance's own units. The node's spool empties."""
import json
import os
import textwrap

import pytest
from conftest import mtls_master_and_node, slapfed_cli

from slapfed.procs import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

COMPUTER = "usage-node"
BURN = 1.0          # CPU seconds the service burns

INSTANCE = textwrap.dedent("""\
    [buildout]
    parts = burner

    [burner]
    recipe = slapfed:service
    path = ${partition:services}/burner
    command =
        ${partition:python}
        -c
        import sys, time; end = time.process_time() + %(burn)s; any(iter(lambda: time.process_time() >= end, True)); open(sys.argv[1], 'a').write('{"resource": "x-requests", "quantity": 3}\\n'); time.sleep(86400)
        ${partition:usage-file}
    """) % {"burn": BURN}

SOFTWARE = textwrap.dedent("""\
    [buildout]
    parts = instance-default

    [instance-default]
    recipe = slapfed:file
    source = ${release:directory}/instance-default.cfg
    path = ${buildout:directory}/instance-default.cfg
    """)


def test_the_master_shows_what_the_node_measured(tmp_path_factory):
    base = tmp_path_factory.mktemp("usage")
    release = base / "burner"
    release.mkdir()
    (release / "instance-default.cfg").write_text(INSTANCE)
    (release / "software.cfg").write_text(SOFTWARE)
    for path in (release, release / "instance-default.cfg", release / "software.cfg"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    url = str(release / "software.cfg")
    with mtls_master_and_node(base, COMPUTER, partitions=2, address_octet=213,
                              node_args=("--usage-interval", "2")) as fed:
        slapfed_cli("supply", url, "--computer", COMPUTER, env=fed["admin_env"])
        inst = json.loads(slapfed_cli("request", "burner-1", url, "--wait", "180",
                                      "--json", env=fed["env"]).stdout)
        assert inst["status"]["state"] == "started"

        def totals():
            usage = fed["client"].instance_usage(inst["id"])
            return {u["resource"]: u["quantity"] for u in usage["totals"]}

        def measured():
            t = totals()
            return t if t.get("cpu_seconds", 0) >= 0.8 * BURN and "x-requests" in t \
                and "disk_bytes" in t else None

        seen = wait_for(measured, 120, "the burner's usage at the master", interval=0.5)
        assert seen["cpu_seconds"] < BURN + 3           # its own second, plus start-up
        assert seen["x-requests"] == 3                  # the line, read once
        assert seen["memory_peak_bytes"] > 1 << 20      # a Python interpreter
        assert seen["memory_byte_seconds"] > 0
        assert seen["disk_bytes"] > 0 and seen["disk_byte_seconds"] > 0
        assert "net_rx_bytes" not in seen               # not measurable per partition
        spool = fed["root"] / "var" / "usage" / "spool"
        wait_for(lambda: not any(spool.iterdir()), 30, "the node's spool to empty", interval=0.2)
        later = wait_for(lambda: (lambda t: t if t["cpu_seconds"] >= seen["cpu_seconds"]
                                  else None)(totals()), 10, "the totals again", interval=0.5)
        assert later["x-requests"] == 3                 # reports go on; nothing twice
        # and the requester reads the same with the CLI
        shown = json.loads(slapfed_cli("usage", "burner-1", "--json", env=fed["env"]).stdout)
        cli_totals = {u["resource"]: u["quantity"] for u in shown["totals"]}
        assert cli_totals["x-requests"] == 3
        assert cli_totals["cpu_seconds"] >= seen["cpu_seconds"]
