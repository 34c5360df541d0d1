"""SLAP side by side: a stock slapproxy (slapos.core 1.26.1, plain HTTP: it has no TLS) and
a slapfed master, plain HTTP in development mode (``slapfed``) and over mutual TLS
(``slapfed-tls``: person and admin certificates from its CA), all driven by the stock
slapos.slap client, in alternating runs on fresh databases. The stock client opens a new
connection for every call (a new requests session each time), so over TLS every call
costs a full handshake: ``slapfed-tls`` measures that case against slapproxy over plain
HTTP.

Workload per run: register one computer of N partitions (loadComputerConfigurationFromXML),
supply one release, M requests of distinct instances pinned to that computer from 1, 4
or 16 client processes, then read the full computer information: once (the first read
after the requests), READS times unchanged, then once after one instance changed (a
new parameter; READS is 20 unless ``--reads K`` says otherwise). Reported per server
and client count: request throughput, p50/p99 latency, partitions given twice (two
instances answered with the same partition), full-information read times (first,
unchanged p50 and the server's CPU per unchanged read, after a change) and size, the
server's CPU time (its whole process tree, from /proc, before and after) over the
request phase and per request, and over the whole workload (``workload_cpu_s``: from
the registration to the last read; ``--reads 3`` makes it five reads in all), and the
clients' own CPU per request (getrusage in each client process: on a 2-core machine the
stock client's cost bounds the throughput).

``--compare DIR`` also runs the slapfed kinds from the slapfed package found in DIR (e.g.
``git archive main | tar -x -C DIR``) as ``slapfed@before`` and ``slapfed-tls@before``,
alternating with this tree's: a before/after in the same run.

The registering connection (also the one that reads the full information) waits up to
REGISTER_TIMEOUT for an answer instead of the stock client's 60 s, for every server:
slapproxy registers a computer in one loadComputerConfigurationFromXML call, linear in N
(one insert per partition and one per address, about 1.2 ms per partition: 5.7-6.2 s for
5,000 at load 1-4 on 2 cores), so the load of a shared machine never decides whether
slapproxy's figures exist.

Run: .venv/bin/python bench/bench_slap.py [N] [M] [rounds] [clients] [servers]
[client] [--compare DIR] [--reads K] [--plain-reads]   (defaults 500 500 2 1,4,16
slapproxy,slapfed,slapfed-tls stock, 20 reads; client ``lean`` makes the same
requestComputerPartition calls, still one new connection each, from a client that builds
its TLS context once; client ``stock-certdir`` is the stock client with the system's CA
store read as a directory, on demand (CERT_DIR_ENV, as README.md advises for stock tools);
client ``native`` makes the same requests through slapfed's own
API (POST /api/v1/instances, JSON) from that lean client, slapfed servers only, to
show what SLAP adds to a native request; at N = 5000 an unchanged slapproxy read takes about 3.5 s, 20 of
them over a minute per run, which ``--reads 5`` shortens; the full-information reads
take gzip as the stock client does (slapfed compresses a document of 16 KiB or more),
``--plain-reads`` asks for plain bytes instead (on loopback, where moving bytes costs
little, compression shows only its cost); needs slapos.core and
slapos.libnetworkcache, which `slapos proxy start` imports (both in setup.py's test
extras): without them it stops at once, naming the missing package; writes
bench/results/slap.json, or slap-CLIENT.json for another client).
"""
from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import os
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, start_master, summary_ms  # noqa: E402

from slapfed.procs import Proc, wait_for  # noqa: E402

RELEASE = "http://releases.invalid/bench/software.cfg"
COMPUTER = "bench-comp"
CLIENTS = (1, 4, 16)
SERVERS = ("slapproxy", "slapfed", "slapfed-tls")
BEFORE = "@before"
READS = 20
REGISTER_TIMEOUT = 3600  # seconds; slapos.slap's own default is 60
# what `slapos proxy start` and the stock client import: without slapos.libnetworkcache,
# `slapos` does not know its proxy command and refuses `--cfg` as an invalid option
NEEDS = {"slapos.slap": "slapos.core", "slapos.libnetworkcache": "slapos.libnetworkcache"}
PROXY_ONLY = {"slapos.libnetworkcache"}


def layout(n: int) -> dict:
    return {"reference": COMPUTER, "address": "127.0.0.1", "netmask": "255.0.0.0",
            "partition_list": [
                {"reference": f"slappart{i}", "tap": {"name": f"slaptap{i}"},
                 "address_list": [{"addr": f"127.{101 + i // 62500}.{i // 250 % 250}."
                                           f"{i % 250 + 1}", "netmask": "255.0.0.0"}]}
                for i in range(n)]}


# slapfed decodes one SLAP document of at most 1 MiB and 20,000 elements (core.marshal):
# a larger computer registers through the native API (same partition ids and addresses).
SLAP_LAYOUT_MAX = 1000


def _register_natively(slap_url: str, n: int, creds=None) -> None:
    from slapfed.client import MasterClient
    parts = [{"id": p["reference"], "address": p["address_list"][0]["addr"],
              "port_base": 10000, "port_count": 10} for p in layout(n)["partition_list"]]
    base = slap_url.removesuffix("/slap/")
    client = (MasterClient(base, timeout=300) if creds is None
              else creds.client(base, timeout=300))
    client.register_computer({"id": COMPUTER, "partitions": parts})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_slapproxy(tmp: Path):
    port = _free_port()
    cfg = tmp / "proxy.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = http://127.0.0.1:{port}\ncomputer_id = {COMPUTER}\n"
                   f"[slapproxy]\nhost = 127.0.0.1\nport = {port}\n"
                   f"database_uri = {tmp / 'proxy.db'}\n")
    slapos = str(Path(sys.executable).with_name("slapos"))
    proc = Proc([slapos, "proxy", "start", "--cfg", str(cfg)], tmp / "proxy.log")
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    wait_for(up, 30, "slapproxy", proc=proc)
    return proc, url + "/"


def start_slapfed(tmp: Path, tls: bool = False, tree: Path | None = None):
    """(proc, SLAP URL, {"admin": Creds, "person": Creds} over TLS, else None)."""
    if tls:
        proc, url, creds = start_master(tmp / "master", tls=True, tree=tree)
        return proc, url + "/slap/", creds
    proc, url = start_master(tmp / "master", tree=tree)
    return proc, url + "/slap/", None


def missing_packages(servers=SERVERS) -> list[str]:
    """The distributions of NEEDS that running ``servers`` needs and are not installed."""
    def found(module):
        try:
            return importlib.util.find_spec(module) is not None
        except (ModuleNotFoundError, ValueError):
            return False
    return [dist for module, dist in NEEDS.items()
            if ("slapproxy" in servers or module not in PROXY_ONLY) and not found(module)]


def _slap(url: str, creds=None, timeout: float | None = None):
    """A stock slapos.slap connection; over TLS with that certificate and key (slapos.slap
    1.26.1 never verifies the server, and refuses to be given a CA file); ``timeout``
    replaces the client's default of 60 s."""
    from slapos import slap as slap_lib
    conn = slap_lib.slap()
    extra = {} if timeout is None else {"timeout": timeout}
    if creds is None:
        conn.initializeConnection(url, **extra)
    else:
        conn.initializeConnection(url, key_file=creds.key, cert_file=creds.cert, **extra)
    return conn


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and every live descendant (gunicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, total, grew = {pid}, 0, True
    while grew:
        grew = False
        for p, (ppid, _cpu) in stats.items():
            if ppid in tree and p not in tree:
                tree.add(p)
                grew = True
    for p in tree:
        total += stats.get(p, (0, 0))[1]
    return total / tick


def _requester(args):
    url, refs, start_at, creds = args
    order = _slap(url, creds).registerOpenOrder()
    while time.time() < start_at:
        time.sleep(0.001)
    lat, given, errors = [], [], 0
    cpu0 = _cpu_self()
    for ref in refs:
        t0 = time.perf_counter()
        try:
            part = order.request(RELEASE, ref, partition_parameter_kw={"n": ref},
                                 filter_kw={"computer_guid": COMPUTER})
            given.append(part.getId())
        except Exception:  # noqa: BLE001 - counted and reported, the run goes on
            errors += 1
        lat.append(time.perf_counter() - t0)
    return lat, given, errors, _cpu_self() - cpu0


# the stock client over TLS builds a new context for every call and, since it passes
# verify=False, urllib3 loads the system's default CA store into it, a certificate it
# never checks: in OpenSSL 3.0 reading the 144-certificate bundle costs about 48 ms of
# CPU. With the store read as a hashed directory instead (SSL_CERT_FILE naming no file,
# SSL_CERT_DIR the system's directory), OpenSSL looks a certificate up only when one is
# verified: the stock client unchanged, in the environment README.md gives stock tools.
CERT_DIR_ENV = {"SSL_CERT_FILE": "/nonexistent/slapfed-no-ca-bundle",
                "SSL_CERT_DIR": "/etc/ssl/certs"}


def _certdir_requester(args):
    """The stock client (``_requester``) in CERT_DIR_ENV."""
    os.environ.update(CERT_DIR_ENV)
    return _requester(args)


def _one_connection_per_call(args, path_of, body_of, content_type: str, ok=(200,)):
    """``refs`` requested with one new connection per call, hence a full handshake over
    TLS, from a client that builds its TLS context once (as a client that cares would):
    ``path_of(url path)`` is where, ``body_of(ref)`` what is posted."""
    import http.client
    import ssl
    from urllib.parse import urlsplit
    url, refs, start_at, creds = args
    parts = urlsplit(url)
    ctx = None
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=creds.ca)
        ctx.load_cert_chain(creds.cert, creds.key)
    path = path_of(parts.path)
    while time.time() < start_at:
        time.sleep(0.001)
    lat, given, errors = [], [], 0
    cpu0 = _cpu_self()
    for ref in refs:
        t0 = time.perf_counter()
        body = body_of(ref)
        conn = (http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx)
                if ctx is not None else http.client.HTTPConnection(parts.hostname, parts.port))
        try:
            conn.request("POST", path, body, {"Content-Type": content_type,
                                              "Connection": "close"})
            answer = conn.getresponse()
            answer.read()
            if answer.status in ok:
                given.append(ref)
            else:
                errors += 1
        except OSError:
            errors += 1
        finally:
            conn.close()
        lat.append(time.perf_counter() - t0)
    return lat, given, errors, _cpu_self() - cpu0


def _lean_requester(args):
    """The stock client's requestComputerPartition call (same form fields) from a lean
    client (see _one_connection_per_call): what a new connection costs the server
    without the stock client's own cost (it loads the system's CA bundle into a new
    context on every call)."""
    from urllib.parse import urlencode
    from slapos.util import dumps
    return _one_connection_per_call(
        args, lambda path: path + "requestComputerPartition",
        lambda ref: urlencode({"software_release": RELEASE, "partition_reference": ref,
                               "partition_parameter_xml": dumps({"n": ref}),
                               "filter_xml": dumps({"computer_guid": COMPUTER}),
                               "software_type": "RootSoftwareInstance",
                               "state": dumps(None), "shared_xml": dumps(False)}),
        "application/x-www-form-urlencoded")


def _native_requester(args):
    """The same requests through slapfed's native API (POST /api/v1/instances, JSON), from
    the same lean client: side by side with ``lean`` it shows what SLAP's forms and
    marshalling add to a native request."""
    return _one_connection_per_call(
        args, lambda path: path.removesuffix("slap/") + "api/v1/instances",
        lambda ref: json.dumps({"reference": ref, "software_url": RELEASE,
                                "software_type": "RootSoftwareInstance",
                                "parameters": {"n": ref}, "sla": {"computer_guid": COMPUTER}}),
        "application/json", ok=(200, 201))


def _change_natively(url: str, ref: str, creds=None) -> None:
    from slapfed.client import MasterClient
    base = url.removesuffix("/slap/")
    client = MasterClient(base) if creds is None else creds.client(base)
    client.request(ref, RELEASE, "RootSoftwareInstance", parameters={"n": "changed"},
                   sla={"computer_guid": COMPUTER})


CLIENT_KINDS = {"stock": _requester, "stock-certdir": _certdir_requester,
                "lean": _lean_requester, "native": _native_requester}


def one_run(kind: str, tmp: Path, n: int, m: int, clients: int,
            compare: Path | None = None, client: str = "stock", reads: int = READS,
            plain_reads: bool = False) -> dict:
    from slapos.util import dumps
    base, _, before = kind.partition("@")
    creds = None
    if base == "slapproxy":
        proc, url = start_slapproxy(tmp)
    else:
        proc, url, creds = start_slapfed(tmp, tls=base == "slapfed-tls",
                                         tree=compare if before else None)
    admin = None if creds is None else creds["admin"]
    person = None if creds is None else creds["person"]
    try:
        conn = _slap(url, admin, timeout=REGISTER_TIMEOUT)
        cpu_workload0 = tree_cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        if base != "slapproxy" and n > SLAP_LAYOUT_MAX:
            _register_natively(url, n, admin)
        else:
            conn.registerComputer(COMPUTER).updateConfiguration(dumps(layout(n)))
        register_s = time.perf_counter() - t0
        conn.registerSupply().supply(RELEASE, COMPUTER)
        refs = [f"inst-{i}" for i in range(m)]
        shares = [refs[i::clients] for i in range(clients)]
        cpu0 = tree_cpu_seconds(proc.pid)
        start_at = time.time() + 1.0
        with mp.Pool(clients) as pool:
            t0 = time.time()
            results = pool.map(CLIENT_KINDS[client],
                               [(url, s, start_at, person) for s in shares])
            wall = time.time() - max(t0, start_at)
        cpu = tree_cpu_seconds(proc.pid) - cpu0
        lat = [x for r in results for x in r[0]]
        given = [x for r in results for x in r[1]]
        errors = sum(r[2] for r in results)
        client_cpu = sum(r[3] for r in results)
        helper = conn._connection_helper
        order = _slap(url, person).registerOpenOrder()

        # the stock client takes gzip (requests asks for it); --plain-reads asks for none
        read_headers = {"Accept-Encoding": "identity"} if plain_reads else None

        def full_read():
            t0 = time.perf_counter()
            body = helper.GET("getFullComputerInformation", params={"computer_id": COMPUTER},
                              headers=read_headers)
            return time.perf_counter() - t0, len(body)
        first, size = full_read()
        cpu_reads0 = tree_cpu_seconds(proc.pid)
        unchanged = [full_read()[0] for _ in range(reads)]
        cpu_per_read = (tree_cpu_seconds(proc.pid) - cpu_reads0) / reads
        if client == "native":      # the instance is the native requester's: ask the same way
            _change_natively(url, refs[0], person)
        else:
            order.request(RELEASE, refs[0], partition_parameter_kw={"n": "changed"},
                          filter_kw={"computer_guid": COMPUTER})
        changed, _ = full_read()
        workload_cpu = tree_cpu_seconds(proc.pid) - cpu_workload0
        return {"server": kind, "client": client, "clients": clients, "partitions": n,
                "requests": m,
                "register_s": round(register_s, 3),
                "requests_per_s": round(m / wall, 1), **summary_ms(lat),
                "errors": errors, "given_twice": len(given) - len(set(given)),
                "server_cpu_s": round(cpu, 2),
                "workload_cpu_s": round(workload_cpu, 2),
                "server_cpu_ms_per_request": round(cpu * 1e3 / m, 3),
                "client_cpu_ms_per_request": round(client_cpu * 1e3 / m, 3),
                "full_info_first_ms": round(first * 1e3, 1),
                "full_info_next_p50_ms": round(statistics.median(unchanged) * 1e3, 1),
                "full_info_next_cpu_ms": round(cpu_per_read * 1e3, 1),
                "full_info_after_change_ms": round(changed * 1e3, 1),
                "full_info_bytes": size}
    finally:
        proc.stop()


METRICS = ("requests_per_s", "p50_ms", "p99_ms", "given_twice", "server_cpu_s",
           "workload_cpu_s", "server_cpu_ms_per_request", "client_cpu_ms_per_request", "full_info_first_ms",
           "full_info_next_p50_ms", "full_info_next_cpu_ms", "full_info_after_change_ms",
           "full_info_bytes", "errors")
# (figure, True when larger is better): slapproxy's figure over slapfed's, or the reverse
RATIOS = {"requests_per_s": True, "server_cpu_s": False, "workload_cpu_s": False,
          "full_info_first_ms": False, "full_info_next_p50_ms": False, "full_info_next_cpu_ms": False,
          "full_info_after_change_ms": False}


def ratios(row: dict, kind: str, against: str = "slapproxy") -> dict:
    """How many times better ``kind`` does than ``against`` on each figure of RATIOS
    (throughput: kind / against; times and CPU: against / kind)."""
    out = {}
    mine, theirs = row.get(kind), row.get(against)
    if not mine or not theirs:
        return out
    for key, larger_better in RATIOS.items():
        a, b = (mine[key], theirs[key]) if larger_better else (theirs[key], mine[key])
        out[key] = round(a / b, 2) if b else None
    return out


def summarize(runs: list[dict], kinds, clients_counts) -> dict:
    summary = {}
    for clients in clients_counts:
        row = {}
        for kind in kinds:
            mine = [x for x in runs if x["server"] == kind and x["clients"] == clients]
            if mine:
                row[kind] = {k: round(statistics.median(x[k] for x in mine), 3)
                             for k in METRICS}
        for kind in kinds:
            if kind != "slapproxy" and "slapproxy" in row and kind in row:
                row[f"{kind} vs slapproxy (times better)"] = ratios(row, kind)
            if kind.endswith(BEFORE) and kind.removesuffix(BEFORE) in row:
                row[f"{kind.removesuffix(BEFORE)} vs {kind} (times better)"] = ratios(
                    row, kind.removesuffix(BEFORE), kind)
        summary[f"{clients}_clients"] = row
    return summary


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    compare = None
    if "--compare" in argv:
        i = argv.index("--compare")
        compare = Path(argv[i + 1]).resolve()
        del argv[i:i + 2]
    plain_reads = "--plain-reads" in argv
    if plain_reads:
        argv.remove("--plain-reads")
    reads = READS
    if "--reads" in argv:
        i = argv.index("--reads")
        reads = int(argv[i + 1])
        del argv[i:i + 2]
        if reads < 1:
            raise SystemExit("--reads must be at least 1")
    n = int(argv[0]) if len(argv) > 0 else 500
    m = int(argv[1]) if len(argv) > 1 else 500
    rounds = int(argv[2]) if len(argv) > 2 else 2
    clients_counts = tuple(int(c) for c in argv[3].split(",")) if len(argv) > 3 else CLIENTS
    servers = tuple(argv[4].split(",")) if len(argv) > 4 else SERVERS
    client = argv[5] if len(argv) > 5 else "stock"
    missing = missing_packages(servers)
    if missing:
        pip = Path(sys.executable).parent / "pip"
        raise SystemExit(f"bench_slap needs {' and '.join(missing)} (the stock slapos.slap "
                         f"client and `slapos proxy start`), not installed here: "
                         f"{pip} install {' '.join(missing)}")
    if client == "native" and "slapproxy" in servers:
        raise SystemExit("client 'native' speaks slapfed's own API: give slapfed servers only")
    if client not in CLIENT_KINDS:
        raise SystemExit(f"client {client!r} is not one of {', '.join(CLIENT_KINDS)}")
    kinds = list(servers)
    if compare is not None:
        kinds += [k + BEFORE for k in servers if k != "slapproxy"]
    runs = []
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-slap-") as d:
        for r in range(rounds):
            for clients in clients_counts:
                # alternate the order, so drift (other load) hits every kind alike
                order = kinds if (r + clients) % 2 else list(reversed(kinds))
                for kind in order:
                    tmp = Path(d) / f"{kind}-{r}-{clients}"
                    tmp.mkdir()
                    run = one_run(kind, tmp, n, m, clients, compare, client, reads, plain_reads)
                    runs.append(run)
                    print(json.dumps(run), flush=True)
                    shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(runs, kinds, clients_counts)
    results = {"partitions": n, "requests": m, "rounds": rounds, "client": client,
               "reads": reads, "plain_reads": plain_reads,
               "load_average": os.getloadavg(),
               "compare": str(compare) if compare else None, "summary": summary,
               "runs": runs}
    path = save("slap" if client == "stock" else f"slap-{client}", results)
    print(json.dumps(summary, indent=2))
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
