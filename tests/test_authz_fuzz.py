"""Fuzzed malformed input at the authenticated API (hypothesis, Flask test client, certificates
injected): never a server error (5xx), and a refused request writes nothing (the storage's
last transaction id is unchanged)."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import last_tid

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=5),
    max_leaves=12)
FIELDS = ["reference", "software_url", "software_type", "parameters", "sla", "state", "shared",
          "requester", "parent", "id", "partitions", "url", "status", "csr", "token", "role",
          "name", "days", "hosts", "computer", "ttl", "reason", "instance_id", "revision",
          "open_to"]
BODIES = (st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6).map(json.dumps)
          | JSON.map(json.dumps) | st.binary(max_size=64).map(lambda b: b))

# (actor, method, path template): every writing route, called by an actor it allows
ROUTES = [
    ("person_a", "POST", "/instances"),
    ("person_a", "POST", "/placements"),
    ("person_a", "PUT", "/instances/{a_root}/state"),
    ("admin", "POST", "/computers"),
    ("admin", "POST", "/computers/node-x/software"),
    ("node_x", "PUT", "/computers/node-x/software/{h}/status"),
    ("node_x", "PUT", "/computers/node-x/partitions/{a_part}/status"),
    ("node_x", "POST", "/computers/node-x/partitions/{a_part}/certificate"),
    ("admin", "POST", "/certificates"),
    ("admin", "POST", "/certificates/{a_serial}/revocation"),
    ("admin", "POST", "/tokens"),
    ("anonymous", "POST", "/node-certificates"),
]


@pytest.mark.parametrize("actor,method,template", ROUTES,
                         ids=[f"{m} {t}" for _a, m, t in ROUTES])
def test_malformed_bodies_never_break_the_master(authz_world, actor, method, template):
    from slapfed.core.wire import software_hash
    w = authz_world
    path = template.format(a_root=w.a_root["id"], h=software_hash("/srv/releases/hello/software.cfg"),
                           a_part=w.a_root["placement"]["partition"],
                           a_serial=w.serials["person_b"])

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=BODIES)
    def check(body):
        before = last_tid(w.db)
        data = body if isinstance(body, bytes) else body.encode()
        der = w.certs[actor]
        resp = w.client.open("/api/v1" + path, method=method, data=data,
                             content_type="application/json",
                             environ_base={} if der is None else
                             {"slapfed.peer_certificate": der})
        assert resp.status_code < 500, resp.get_data(as_text=True)
        if resp.status_code >= 400:
            assert set(resp.json["error"]) == {"code", "message", "details", "request_id"}
            assert last_tid(w.db) == before

    check()
