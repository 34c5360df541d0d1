"""The OpenAPI document's guard (tests/openapi_contract.py) catches drift, the document
declares its security, and `slapfed master openapi` writes the document the master serves."""
import json

import pytest

from conftest import slapfed_cli
from openapi_contract import Contract, ContractDrift, contract
from slapfed.master.openapi import openapi_document

API = "/api/v1"


def test_every_document_is_a_valid_openapi_3_1_schema_set():
    from jsonschema import Draft202012Validator
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    assert '"format": "ip"' not in json.dumps(doc)


@pytest.mark.parametrize("case, status, body, problem", [
    ("an extra field", 200, {"status": "ok", "generation": 1, "version": "x", "extra": 1},
     "'extra' was unexpected"),
    ("a missing field", 200, {"status": "ok", "version": "x"}, "'generation' is a required"),
    ("an undocumented status", 418, {"status": "ok"}, "status 418 is not documented"),
    ("a non-JSON body", 200, b"not json", "not JSON"),
])
def test_the_guard_names_the_drift(master_app, case, status, body, problem):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    found = contract().check(master_app, "GET", f"{API}/health", status, "application/json",
                             raw)
    assert len(found) == 1 and problem in found[0] and "/health" in found[0], found


def test_an_undocumented_route_is_drift(master_app):
    doc = json.loads(json.dumps(openapi_document()))
    del doc["paths"]["/whoami"]
    found = Contract(doc).check(master_app, "GET", f"{API}/whoami", 200, "application/json",
                                b"{}")
    assert found and "not in the OpenAPI document" in found[0]


def test_a_body_the_server_takes_but_the_document_forbids_is_drift(master_app):
    doc = json.loads(json.dumps(openapi_document()))
    doc["components"]["schemas"]["Supply"]["properties"]["url"]["maxLength"] = 3
    found = Contract(doc).check(
        master_app, "POST", f"{API}/computers/c1/software", 200, "application/json",
        b"{}", {"url": "/srv/x"}, True)
    assert found and "accepted a request body the document forbids" in found[0]


def test_the_test_client_fails_a_test_on_drift(api, monkeypatch):
    from slapfed.master import meta
    monkeypatch.delenv("SLAPFED_CONTRACT_LOG", raising=False)    # raise, not log
    monkeypatch.setattr(meta, "__version__", 7)      # the health answer's version: no string
    with pytest.raises(ContractDrift, match="version"):
        api.get(f"{API}/health")


def test_mutual_tls_everywhere_but_the_public_operations():
    from slapfed.ca import policy
    from slapfed.master.auth import GUARDS
    doc = openapi_document()
    assert doc["components"]["securitySchemes"]["mutualTLS"]["type"] == "mutualTLS"
    assert doc["security"] == [{"mutualTLS": []}]
    public = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()
              if op.get("security") == []}
    assert public == {"health", "openapi", "redeem_token"}
    # the same operations as the policy's public rules
    public_endpoints = {e.split(".", 1)[1] for e, g in GUARDS.items()
                        if policy.RULES[g.action].public}
    assert public_endpoints == {"health", "openapi", "redeem_token"}


def test_the_cli_writes_the_document_the_master_serves(api, tmp_path):
    served = api.get(f"{API}/openapi.json").json
    printed = json.loads(slapfed_cli("master", "openapi").stdout)
    slapfed_cli("master", "openapi", "--out", str(tmp_path / "openapi.json"))
    written = json.loads((tmp_path / "openapi.json").read_text())
    assert served == printed == written


def test_the_documented_roles_and_revocation_reasons_are_the_cas():
    from slapfed.ca.authority import REVOCATION_REASONS
    from slapfed.ca.identity import ROLES
    from slapfed.master import openapi
    assert set(openapi.IDENTITY_ROLES) == set(ROLES)
    assert set(openapi.REVOCATION_REASONS) == set(REVOCATION_REASONS)


@pytest.mark.parametrize("schema, field", [("Supply", "state"), ("InstanceRequest", "state"),
                                           ("Revocation", "reason"), ("PeerUpdate", "trust")])
def test_an_optional_choice_may_be_null_as_the_server_takes_it(schema, field):
    from jsonschema import Draft202012Validator
    prop = openapi_document()["components"]["schemas"][schema]["properties"][field]
    assert Draft202012Validator(prop).is_valid(None)


def test_every_route_declares_its_operation_and_every_declaration_has_a_route(monkeypatch):
    from flask import Flask
    from slapfed.master import openapi
    app = Flask("routes")
    app.add_url_rule("/api/v1/undeclared", "nowhere.undeclared", lambda: "")
    with pytest.raises(LookupError, match="declares no operation"):
        openapi.generate(app)
    monkeypatch.setitem(openapi.OPERATIONS, "nowhere.gone", openapi.OPERATIONS["meta.health"])
    openapi._generate.cache_clear()         # generated once per set of routes
    try:
        with pytest.raises(LookupError, match="nowhere.gone"):
            openapi.generate()
    finally:
        openapi._generate.cache_clear()


def test_the_schemas_are_the_wire_types_and_answers():
    from slapfed.core import answers, wire
    schemas = openapi_document()["components"]["schemas"]
    assert {t.__name__ for t in wire.BODIES} <= set(schemas)
    assert {m.__name__ for m in answers.ANSWERS} <= set(schemas)
    assert schemas["PartitionSpec"]["properties"]["port_base"] == {
        "maximum": 65535, "minimum": 1, "title": "Port Base", "type": "integer"}
    assert "\\Z" not in json.dumps(schemas)       # Python's anchor has no meaning there
