"""Concurrent requesters against a REAL gunicorn master over HTTP on loopback: no
partition is ever given to two instances (FileStorage with one threaded worker, and
ZEO with two worker processes)."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

URL = "/srv/releases/hello/software.cfg"
PARTITIONS = 220
INSTANCES = 200
THREADS = 16


def _session():
    s = requests.Session()
    s.trust_env = False
    return s


def _hammer(url: str) -> list[dict]:
    """16 threads request 200 references, each twice (new and idempotent re-requests)."""
    local = threading.local()

    def request(n):
        if not hasattr(local, "s"):
            local.s = _session()
        for attempt in range(3):
            try:
                r = local.s.post(f"{url}/api/v1/instances", timeout=60,
                                 json={"reference": f"web-{n % INSTANCES}", "software_url": URL,
                                       "parameters": {"n": n % INSTANCES}})
                break
            except requests.ConnectionError:
                # a dropped keep-alive connection: asking again is safe, a request is
                # idempotent on (requester, reference) — which this test also proves
                local.s = _session()
                if attempt == 2:
                    raise
        assert r.status_code in (200, 201), r.text
        return r.status_code, r.json()

    order = list(range(2 * INSTANCES))
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(request, order))
    created = [body for code, body in results if code == 201]
    # every reference is created once (a retried request whose first answer was lost
    # gets 200 for what it created); _check_bijection counts the instances themselves
    assert len(created) <= INSTANCES
    assert len({body["reference"] for _, body in results}) == INSTANCES
    return [body for _, body in results]


def _check_bijection(url: str, answers: list[dict]) -> None:
    s = _session()
    instances = s.get(f"{url}/api/v1/instances", params={"limit": 1000},
                      timeout=60).json()["instances"]
    computer = s.get(f"{url}/api/v1/computers/c1", timeout=60).json()
    assert len(instances) == INSTANCES
    by_id = {i["id"]: i for i in instances}
    # the same reference always answered the same instance
    per_reference = {}
    for body in answers:
        assert per_reference.setdefault(body["reference"], body["id"]) == body["id"]
    # every partition's instance is placed on that partition ...
    hosting = {}
    for p in computer["partitions"]:
        if p["instance"] is not None:
            assert p["instance"] not in hosting, f"{p['instance']} holds two partitions"
            hosting[p["instance"]] = p["id"]
            assert by_id[p["instance"]]["placement"]["partition"] == p["id"]
    # ... and every instance's placement points back at it: a bijection
    placements = [i["placement"]["partition"] for i in instances]
    assert len(set(placements)) == INSTANCES, "a partition was given twice"
    assert hosting == {i["id"]: i["placement"]["partition"] for i in instances}
    assert len(hosting) == INSTANCES


def _prepare(url: str) -> None:
    s = _session()
    parts = [{"id": f"p{i:03d}", "address": f"127.1.{i // 250}.{i % 250 + 1}",
              "port_base": 20000, "port_count": 10} for i in range(PARTITIONS)]
    assert s.post(f"{url}/api/v1/computers", json={"id": "c1", "partitions": parts},
                  timeout=60).status_code == 201
    assert s.post(f"{url}/api/v1/computers/c1/software", json={"url": URL},
                  timeout=60).status_code == 200


@pytest.mark.timeout(180)
@pytest.mark.parametrize("args", [
    (),
    ("--start-zeo", "--workers", "2", "--threads", "8"),
], ids=["filestorage-1-worker", "zeo-2-workers"])
def test_concurrent_requests_never_share_a_partition(master_server, args):
    url = master_server(*args)
    _prepare(url)
    answers = _hammer(url)
    _check_bijection(url, answers)
