"""End to end: a tenant's parameter values never become buildout code. A real master
(gunicorn, mutual TLS), a real node enrolled with a token, real buildout runs and a real
supervisord; alice (a person, not an admin) requests the hello release with values that
used to add sections to the instance buildout (a ``\\r`` starts a line for zc.buildout)."""
import json
import os
import urllib.request
from pathlib import Path

import pytest
from conftest import mtls_master_and_node

import zc.buildout.configparser

from slapfed.core.errors import InvalidInput


REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
COMPUTER = "e2e-inject"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def get(url, timeout=5):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    with mtls_master_and_node(tmp_path_factory.mktemp("inject"), COMPUTER,
                              address_octet=207) as fed:
        fed["admin"].supply(COMPUTER, HELLO)
        yield fed


def test_a_tenant_cannot_replace_a_service_or_publish_through_a_parameter(federation):
    fed = federation
    marker = fed["base"] / "pwned"
    web_attack = f"hi\r[web]\rcommand = /bin/touch {marker}\r"
    publish_attack = "bob\r[publish]\rinjected = yes\r\n[buildout]\rparts = publish"
    client = fed["client"]
    inst = client.request("hello-hostile", HELLO,
                          parameters={"greeting": web_attack, "name": publish_attack})
    done = client.wait_ready(inst["id"], 120)
    assert done["status"]["state"] == "started", done["status"].get("log_tail")

    # no injected option reached the connection parameters; the release's service runs
    assert set(done["connection"]) == {"url"}
    served = get(done["connection"]["url"])
    # ... and received both values exactly as given (hello decodes what the node encoded)
    assert served["greeting"] == web_attack and served["name"] == publish_attack
    assert not marker.exists()

    part = fed["root"] / "partitions" / done["placement"]["partition"]
    wrapper = (part / "etc" / "service" / "web").read_text()
    assert "slapfed-hello-web" in wrapper and "touch" not in wrapper
    assert sorted(os.listdir(part / "etc" / "service")) == ["web"]
    with open(part / "buildout.cfg") as fh:                # as buildout reads it
        sections = zc.buildout.configparser.parse(fh, "buildout.cfg")
    assert set(sections) == {"buildout", "partition", "parameters"}
    assert set(sections["parameters"]) == {"greeting", "name"}
    with open(part / ".installed.cfg") as fh:
        installed = zc.buildout.configparser.parse(fh, ".installed.cfg")
    assert set(installed) == {"buildout", "web", "health", "publish"}
    raw = json.loads((part / ".slapfed" / "parameters.json").read_text())
    assert raw["parameters"] == {"greeting": web_attack, "name": publish_attack}

    # a key that is not a plain identifier is refused by the master, naming it
    with pytest.raises(InvalidInput) as err:
        client.request("hello-key", HELLO, parameters={"greeting\r[web]": "x"})
    assert [d["field"] for d in err.value.details] == ["parameters.greeting\r[web]"]
    assert fed["node"].alive()
