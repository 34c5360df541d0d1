"""CDN front benchmark: requests per second of the real front with and without its
accounting per site (``--usage-file``).

Run: .venv/bin/python bench/bench_cdn_usage.py (about a minute; writes
bench/results/cdn_usage.json).

The real ``slapfed-cdn-front`` process (as profiles/cdn runs it, its access log going to a
file) over 10 sites in front of one aiohttp origin (its own process), loaded by an
aiohttp client of keep-alive connections spread over the sites, for DURATION seconds
after a warm-up; the front's CPU per request is read from /proc over
the same window (less disturbed than throughput by other work on the machine). Two workloads: ``hit`` (GETs answered from the cache)
and ``pass`` (GETs of a no-store path: every one asks the origin). Each run starts two
fresh fronts side by side, one without and one with accounting (flushing every second,
more often than the profile's 5 s), each loaded by 8 of the 16 connections over the
same window, so that whatever else the machine does weighs on both alike; RUNS runs,
the medians are compared, and the median of each run's ratio (with over without).
After each run the usage-file is read the way the node reads it: its x-requests must be
exactly the requests the client completed.
"""
from __future__ import annotations

import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

SITES = 10
CONCURRENCY = 16
WARMUP = 0.5
DURATION = 3.0
RUNS = 5
FLUSH = 1.0
WORKLOADS = {"hit": "page", "pass": "x/private"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def origin_main(port: int) -> None:
    """A small aiohttp origin: 1 KiB JSON pages, ``no-store`` for paths ending in
    /private."""
    from aiohttp import web

    body = json.dumps({"pad": "x" * 1000}).encode()

    async def page(request):
        headers = {"Cache-Control": "no-store"} if request.path.endswith("/private") else {}
        return web.Response(body=body, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def wait_port(port: int, proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port} (exit {proc.poll()})") from None
            time.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    """User and system CPU of process ``pid`` so far."""
    import os
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, path: str, duration: float, pid: int) -> tuple[int, float, float]:
    """(requests completed during the warm-up and the measure, requests per second of
    the measure, the front's CPU microseconds per request during the measure)."""
    import aiohttp

    done = [0, 0]
    measuring = [False]
    end = time.monotonic() + WARMUP + duration

    async def worker(session, k):
        i = k
        while time.monotonic() < end:
            async with session.get(f"{url}s{i % SITES}/{path}") as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            done[0] += 1
            if measuring[0]:
                done[1] += 1
            i += 1

    connector = aiohttp.TCPConnector(limit=CONCURRENCY // 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.ensure_future(worker(session, k)) for k in range(CONCURRENCY // 2)]
        await asyncio.sleep(WARMUP)
        measuring[0] = True
        t0, cpu0 = time.monotonic(), cpu_seconds(pid)
        await asyncio.gather(*tasks)
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    return done[0], done[1] / elapsed, cpu / done[1] * 1e6


def requests_counted(path: Path) -> float:
    from slapfed.node.usage import parse_lines
    read = parse_lines(path.read_bytes()) if path.exists() else None
    if read is None:
        return 0
    assert read.bad == 0, f"{read.bad} bad line(s) in {path}"
    return sum(q for r, _, q in read.units if r == "x-requests")


def start_front(work: Path, table: Path, usage: Path | None):
    port = free_port()
    argv = [sys.executable, "-m", "slapfed.samples.cdn", "--address", "127.0.0.1",
            "--port", str(port), "--table", str(table)]
    if usage is not None:
        argv += ["--usage-file", str(usage), "--usage-flush", str(FLUSH)]
    with open(work / "front.log", "ab") as log:
        front = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, front)
    return front, f"http://127.0.0.1:{port}/"


def one_run(work: Path, origin_url: str, path: str, n: int) -> dict:
    """Two fresh fronts at once, one without and one with accounting, each loaded by
    half the connections over the same window: {variant: (req/s, CPU us per request)}
    (whatever else the machine does then weighs on both alike)."""
    table = work / "sites.json"
    table.write_text(json.dumps({"sites": {
        f"s{i}": {"backend": origin_url, "instance": f"i-site{i}", "reference": f"s{i}",
                  "domain": None} for i in range(SITES)}}))
    usage = work / f"usage-{path.replace('/', '_')}-{n}.jsonl"
    fronts = {}
    try:
        fronts["without"] = start_front(work, table, None)
        fronts["with"] = start_front(work, table, usage)

        async def both():
            return await asyncio.gather(*(load(url, path, DURATION, proc.pid)
                                          for proc, url in fronts.values()))
        results = dict(zip(fronts, asyncio.run(both())))
    finally:
        for proc, _ in fronts.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    counted = requests_counted(usage)
    completed = results["with"][0]
    assert counted == completed, f"usage-file says {counted}, the client {completed}"
    return {variant: (rate, cpu_us) for variant, (_, rate, cpu_us) in results.items()}


def micro() -> dict:
    """The accounting's own cost, alone: one request counted, one flush of every site."""
    from slapfed.samples import cdn

    usage = cdn.SiteUsage()
    ids = [f"i-site{i}" for i in range(SITES)]
    n = 200_000
    t0 = time.perf_counter()
    for i in range(n):
        usage.record(ids[i % SITES], 1024, True, False)
    record_ns = (time.perf_counter() - t0) / n * 1e9
    work = Path(tempfile.mkdtemp(prefix="bench-cdn-flush-"))
    log = cdn.UsageLog(str(work / "usage.jsonl"), usage)
    times = []
    for _ in range(200):
        for sid in ids:
            usage.record(sid, 1024, True, False)
        t0 = time.perf_counter()
        log.flush()
        times.append(time.perf_counter() - t0)
    return {"record_ns": round(record_ns), "flush_us": round(statistics.median(times) * 1e6, 1)}


def bench() -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-cdn-usage-"))
    port = free_port()
    origin = subprocess.Popen([sys.executable, __file__, "--origin", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_port(port, origin)
        origin_url = f"http://127.0.0.1:{port}/"
        out = {"micro": micro()}
        print(f"counting one request {out['micro']['record_ns']} ns, a flush of {SITES} "
              f"sites {out['micro']['flush_us']} us", flush=True)
        for name, path in WORKLOADS.items():
            rates = {"without": [], "with": []}
            cpu = {"without": [], "with": []}
            for n in range(RUNS):
                for variant, (rate, cpu_us) in one_run(work, origin_url, path, n).items():
                    rates[variant].append(rate)
                    cpu[variant].append(cpu_us)
            without, with_ = (statistics.median(rates[v]) for v in ("without", "with"))
            cpu_without, cpu_with = (statistics.median(cpu[v]) for v in ("without", "with"))
            out[name] = {"without_rps": round(without), "with_rps": round(with_),
                         "throughput_overhead_pct": round((without - with_) / without * 100, 2),
                         "without_cpu_us_per_request": round(cpu_without, 1),
                         "with_cpu_us_per_request": round(cpu_with, 1),
                         "cpu_overhead_pct": round((cpu_with - cpu_without) / cpu_without
                                                   * 100, 2),
                         "runs_rps": {v: [round(r) for r in rs] for v, rs in rates.items()},
                         "runs_cpu_us": {v: [round(c, 1) for c in cs] for v, cs in cpu.items()}}
            pairs_rps = [w / o for w, o in zip(rates["with"], rates["without"])]
            pairs_cpu = [w / o for w, o in zip(cpu["with"], cpu["without"])]
            out[name].update(
                paired_throughput_ratio=round(statistics.median(pairs_rps), 3),
                paired_cpu_ratio=round(statistics.median(pairs_cpu), 3),
                best_without_cpu_us=round(min(cpu["without"]), 1),
                best_with_cpu_us=round(min(cpu["with"]), 1))
            r = out[name]
            print(f"{name:5}: without {without:6.0f} req/s ({cpu_without:5.1f} us CPU/req), "
                  f"with accounting {with_:6.0f} req/s ({cpu_with:5.1f} us CPU/req): "
                  f"throughput {-r['throughput_overhead_pct']:+.1f}%, CPU per request "
                  f"{r['cpu_overhead_pct']:+.1f}%\n       median of the paired ratios "
                  f"(with/without, side by side): throughput "
                  f"{r['paired_throughput_ratio']}, CPU per request {r['paired_cpu_ratio']}; "
                  f"best CPU per request {r['best_without_cpu_us']} vs "
                  f"{r['best_with_cpu_us']} us\n       runs {r['runs_rps']}, "
                  f"{r['runs_cpu_us']}", flush=True)
    finally:
        origin.send_signal(signal.SIGTERM)
        origin.wait(30)
    return {"sites": SITES, "concurrency": CONCURRENCY, "duration_s": DURATION,
            "runs": RUNS, "flush_s": FLUSH, **out}


def main() -> None:
    data = bench()
    print(f"results: {save('cdn_usage', data)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--origin"]:
        origin_main(int(sys.argv[2]))
    else:
        main()
