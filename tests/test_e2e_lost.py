"""End to end, a node machine that is gone: a real master process (--lease 2) and two real
nodes over mutual TLS, the keeper sample (profiles/keeper: hello serving a data file that
a backup service copies off the node) supplied and installed on both. It runs on node A
and has data; node A's agent, supervisord and services are killed (SIGKILL, by PID): A
shows unknown and nothing moves. `slapfed computer lost A`: the instance serves on node
B, same id and reference, new connection parameters, and the data it had (restored from
its backup before its first start there). Node A's agent started again: it stops nothing
that runs (nothing runs), sets the partition's data aside under var/quarantine (kept)
and never serves the stale copy; `slapfed computer wipe A` lets it erase them, and the
partition is free again."""
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import extra_node, mtls_master_and_node, slapfed_cli

from slapfed.procs import Proc, pid_alive, slapfed_argv, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "keeper" / "software.cfg")
A, B = "lost-a", "lost-b"


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def refuses(url) -> bool:
    try:
        get(url, timeout=2)
    except OSError:
        return True
    return False


def installed(fed, cid) -> bool:
    sw = fed["admin"].show_computer(cid)["software"]
    return bool(sw) and sw[0]["status"] == "installed"


def partition(fed, cid, pid) -> dict:
    return next(p for p in fed["admin"].show_computer(cid)["partitions"] if p["id"] == pid)


def pids_running(needle: str) -> list[int]:
    """PIDs of the processes whose command line holds ``needle``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if needle.encode() in fh.read():
                        out.append(int(entry))
            except OSError:
                continue
    return out


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_lost_node_is_rebuilt_elsewhere_and_quarantines_on_return(tmp_path_factory):
    base = tmp_path_factory.mktemp("lost")
    again = None
    with mtls_master_and_node(base, A, partitions=2, address_octet=250,
                              master_args=("--lease", "2")) as fed, \
            extra_node(fed, B, partitions=2, address_octet=251):
        try:
            for cid in (A, B):
                slapfed_cli("supply", HELLO, "--computer", cid, env=fed["admin_env"])
            wait_for(lambda: installed(fed, A) and installed(fed, B), 180,
                     "hello installed on both nodes")
            client = fed["client"]
            backups = base / "backups" / "hello-lost"
            backups.parent.mkdir()
            backups.parent.chmod(0o1777)     # partition users of both nodes write there
            inst = client.request("hello-lost", HELLO,
                                  parameters={"greeting": "kept", "backup-to": str(backups)},
                                  sla=[{"computer_guid": A}, {}])
            wait_for(lambda: client.show(inst["id"])["status"]["state"] == "started", 60,
                     "hello started on node A")
            inst = client.show(inst["id"])
            old_part = inst["placement"]["partition"]
            old_url = inst["connection"]["url"]
            service_pid = get(old_url)["pid"]
            assert inst["connection"]["backup"] == str(backups)
            # the instance has data, and its backup service copies them off the node
            old_path = fed["root"] / "partitions" / old_part
            (old_path / "srv").mkdir(exist_ok=True)
            (old_path / "srv" / "data.txt").write_text("written on A")
            wait_for(lambda: get(old_url)["data"] == "written on A"
                     and (backups / "data.txt").exists(), 10, "the data backed up")
            backup_pids = pids_running(f"--backup={old_path}/srv/data.txt")
            assert backup_pids

            # node A's machine goes: its agent, supervisord and service die
            root_a = fed["root"]
            sup_pid = int((root_a / "var" / "supervisord.pid").read_text().strip())
            for pid in (fed["node"].pid, sup_pid, service_pid, *backup_pids):
                kill(pid)
            wait_for(lambda: not fed["node"].alive() and not pid_alive(sup_pid)
                     and not pid_alive(service_pid)
                     and not any(pid_alive(p) for p in backup_pids), 10, "node A gone")
            wait_for(lambda: client.show(inst["id"])["status"]["state"] == "unknown", 15,
                     "unknown after the lease")
            assert client.show(inst["id"])["placement"] == inst["placement"]   # nothing moved

            # the verdict: rebuilt on node B
            t0 = time.monotonic()
            out = slapfed_cli("computer", "lost", A, "--reason", "machine gone",
                              env=fed["admin_env"]).stdout
            assert f"hello-lost ({inst['id']}) from {old_part}: -> {B}/" in out, out
            wait_for(lambda: client.show(inst["id"])["status"]["state"] == "started", 60,
                     "hello started on node B")
            moved = client.show(inst["id"])
            new_url = moved["connection"]["url"]
            print(f"\ncomputer lost -> serving on {B}: {time.monotonic() - t0:.2f} s")
            assert moved["id"] == inst["id"] and moved["reference"] == "hello-lost"
            assert moved["placement"]["computer"] == B
            assert new_url != old_url and get(new_url)["greeting"] == "kept"
            assert get(new_url)["data"] == "written on A"          # restored from backup
            assert partition(fed, A, old_part)["moved"] == {
                "instance": inst["id"], "quarantined": False, "wipe": False}
            shown = slapfed_cli("computer", "show", A, env=fed["admin_env"]).stdout
            assert "LOST since" in shown and "machine gone" in shown, shown
            listed = slapfed_cli("computer", "list", env=fed["admin_env"]).stdout
            assert any(line.startswith(A) and " lost " in line
                       for line in listed.splitlines()), listed

            # node A comes back: the partition is set aside, kept, and never serves again
            again = Proc(slapfed_argv("node", "run", "--root", str(root_a), "--interval",
                                      "0.3"), base / "node-a-again.log")
            wait_for(lambda: partition(fed, A, old_part)["moved"]["quarantined"], 30,
                     "node A quarantines its moved partition", proc=again)
            kept = root_a / "var" / "quarantine" / f"{old_part}--{inst['id']}" / "partition"
            assert kept.is_dir() and os.listdir(kept), kept
            assert not (root_a / "etc" / "supervisord.d" / f"{old_part}.conf").exists()
            assert refuses(old_url)
            assert get(new_url)["greeting"] == "kept"

            # the wipe: node A erases the data, the partition is free, A placeable again
            slapfed_cli("computer", "wipe", A, env=fed["admin_env"])
            wait_for(lambda: partition(fed, A, old_part)["moved"] is None, 30,
                     "node A erases the quarantined data", proc=again)
            assert not kept.exists()
            comp = fed["admin"].show_computer(A)
            assert comp["lost"] is None
            assert partition(fed, A, old_part)["instance"] is None
            other = client.request("hello-after", HELLO, sla={"computer_guid": A})
            assert other["placement"]["computer"] == A
        finally:
            if again is not None:
                again.stop()
