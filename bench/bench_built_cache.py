"""Built-part cache benchmark: a release install with and without the shared cache of
built releases (`node format --shared-cache DIR`).

Run: .venv/bin/python bench/bench_built_cache.py [--runs N] [--files F]
(about N x 5 s; writes bench/results/built_cache.json).
Real buildout runs (the node's fork runner) of one release: a program compiled by the C
compiler (slapfed:build, cc -O2, as in tests/test_built_cache.py) and a part writing F
files of 16 KiB (default 600, about 10 MB: the size of a small built release). Each run
installs it on a fresh node root at the same path: "build" without a cache, "build and
store" the first install with an empty cache (the build plus writing the archive), and
"unpack" with the entry there. Medians over N runs (default 5).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import save  # noqa: E402

from slapfed.core.wire import software_hash  # noqa: E402
from slapfed.node import buildout as nb  # noqa: E402
from slapfed.node.layout import InstallSettings, Paths  # noqa: E402


def release(base: Path, files: int) -> str:
    from test_built_cache import CC, c_source
    rdir = base / "release"
    rdir.mkdir()
    (rdir / "tool.c").write_text(c_source())
    (rdir / "software.cfg").write_text(f"""[buildout]
parts = tool payload instance-default

[tool]
recipe = slapfed:build
command = {CC} -O2 -o tool ${{release:directory}}/tool.c

[payload]
recipe = slapfed:build
command =
    {sys.executable}
    -c
    import os; [open(f"f{{i:04d}}", "wb").write(os.urandom(16384)) for i in range({files})]

[instance-default]
recipe = slapfed:file
path = ${{buildout:directory}}/instance-default.cfg
content = [buildout]
""")
    return str(rdir / "software.cfg")


def fresh(root: Path) -> Paths:
    shutil.rmtree(root, ignore_errors=True)
    paths = Paths(str(root))
    for d in paths.skeleton():
        os.makedirs(d, exist_ok=True)
    return paths


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--files", type=int, default=600)
    args = ap.parse_args(argv)
    runner = nb.ForkRunner()
    runner.warm_up()
    times = {"build": [], "build and store": [], "unpack": []}
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-built-") as tmp:
        base = Path(tmp)
        sw = release(base, args.files)
        h = software_hash(sw)
        root, downloads = base / "node", str(base / "downloads")
        for _ in range(args.runs):
            done = nb.install_software(fresh(root), sw, h, runner,
                                       InstallSettings(False, downloads))
            assert done.ok and not done.cache, done.log_tail
            times["build"].append(done.seconds)
            shared = str(base / "built")
            shutil.rmtree(shared, ignore_errors=True)
            done = nb.install_software(fresh(root), sw, h, runner,
                                       InstallSettings(False, downloads, shared))
            assert done.ok and done.cache.startswith("built; stored"), done.cache
            times["build and store"].append(done.seconds)
            done = nb.install_software(fresh(root), sw, h, runner,
                                       InstallSettings(False, downloads, shared))
            assert done.ok and done.cache.startswith("unpacked"), done.cache
            times["unpack"].append(done.seconds)
        size = sum(e.stat().st_size for e in os.scandir(
            os.path.join(shared, "built", os.listdir(os.path.join(shared, "built"))[0])))
    runner.close()
    medians = {k: round(statistics.median(v), 3) for k, v in times.items()}
    print(f"release: cc -O2 of {Path(sw).parent / 'tool.c'} and {args.files} files of "
          f"16 KiB; entry {size / 1e6:.1f} MB; {args.runs} runs")
    for k, v in times.items():
        print(f"  {k:16s} median {medians[k]:7.3f} s  (min {min(v):.3f}, max {max(v):.3f})")
    print(f"  speed-up of unpack over build: {medians['build'] / medians['unpack']:.1f}x")
    save("built_cache", {"runs": args.runs, "files": args.files, "entry_bytes": size,
                         "seconds": times, "medians": medians})


if __name__ == "__main__":
    main()
