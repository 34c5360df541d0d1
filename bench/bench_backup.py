"""Backup and restore of a master's data directory (store.backup) at 10k and 100k objects.

A realistic mix built with the model: computers of 50 partitions each and as many
instances, each placed on a partition (Partition and Instance objects in the app's
BTrees), plus a CA. Measures a full backup, an incremental one after 1% of the instances
changed, and the restore of the chain (target: 100k objects restored in <= 1 s).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import transaction  # noqa: E402

from common import save  # noqa: E402
from slapfed.ca.authority import CertificateAuthority  # noqa: E402
from slapfed.model import Computer, Instance  # noqa: E402
from slapfed.store import open_db  # noqa: E402
from slapfed.store import backup as bk  # noqa: E402
from slapfed.store.generations import ROOT_KEY  # noqa: E402

PARTITIONS = 50
URL = "/srv/releases/hello/software.cfg"


def build(data: Path, objects: int):
    """About ``objects`` persistent objects: half partitions, half instances."""
    db = open_db(None, str(data))
    n = objects // 2
    conn = db.open()
    app = conn.root()[ROOT_KEY]
    now = time.time()
    for c in range(n // PARTITIONS):
        comp = Computer(f"c{c:05d}", now)
        app.computers[comp.id] = comp
        for p in range(PARTITIONS):
            i = c * PARTITIONS + p
            comp.add_partition(f"p{p:03d}", f"10.{c // 250 % 250}.{c % 250}.{p + 1}",
                               20000 + 10 * p, 10)
            iid = f"i-{i:07d}"
            inst = Instance(iid, "person/alice", f"web-{i}", URL, "h" * 16, "default",
                            {"greeting": f"hello {i}"}, {}, "started", False, None, now)
            app.instances[iid] = inst
            app.by_request[("person/alice", f"web-{i}")] = iid
            comp.allocate(f"p{p:03d}", iid)
        if c % 20 == 19:
            transaction.commit()
    transaction.commit()
    conn.close()
    CertificateAuthority.init(data / "ca", "bench")
    return db


def change(db, fraction: float) -> int:
    conn = db.open()
    app = conn.root()[ROOT_KEY]
    changed = 0
    step = int(1 / fraction)
    for k, iid in enumerate(app.instances.keys()):
        if k % step == 0:
            app.instances[iid].parameters = {"greeting": f"changed {k}"}
            changed += 1
    transaction.commit()
    conn.close()
    return changed


def run(objects: int, work: Path) -> dict:
    data, repo = work / f"data-{objects}", work / f"repo-{objects}"
    t0 = time.perf_counter()
    db = build(data, objects)
    built = time.perf_counter() - t0
    size = (data / "master.fs").stat().st_size
    try:
        full = bk.backup(data, repo)                 # the master keeps its DB open
        changed = change(db, 0.01)
        inc = bk.backup(data, repo)
    finally:
        db.close()
    t0 = time.perf_counter()
    bk.restore(repo, work / f"restored-{objects}")
    restore_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bk.verify(repo, every=True)
    verify_s = time.perf_counter() - t0
    db = open_db(None, str(work / f"restored-{objects}"))
    conn = db.open()
    assert len(conn.root()[ROOT_KEY].instances) == objects // 2 // PARTITIONS * PARTITIONS
    conn.close()
    db.close()
    repo_bytes = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    return {"objects": objects, "build_s": round(built, 2), "fs_mb": round(size / 1e6, 1),
            "full_s": full.seconds, "full_kind": full.kind,
            "incremental_s": inc.seconds, "incremental_kind": inc.kind,
            "incremental_changed": changed, "incremental_kb": round(inc.zodb_bytes / 1e3, 1),
            "restore_s": round(restore_s, 3), "verify_all_s": round(verify_s, 3),
            "repo_mb": round(repo_bytes / 1e6, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="slapfed-bench-backup-"))
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            r = run(n, work)
            rows.append(r)
            print(f"{r['objects']:>7} objects ({r['fs_mb']} MB FileStorage): full backup "
                  f"{r['full_s']:.2f} s, incremental ({r['incremental_changed']} instances "
                  f"changed, {r['incremental_kb']} kB) {r['incremental_s']:.2f} s, restore "
                  f"{r['restore_s']:.2f} s, verify all {r['verify_all_s']:.2f} s; "
                  f"repository {r['repo_mb']} MB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = save("backup", {"rows": rows, "targets_s": {"restore_100000": 1.0}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
