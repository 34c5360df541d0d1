"""The guard that keeps the OpenAPI document honest: every answer a test receives from a
master app through the Flask test client is checked against the document the master
serves (slapfed.master.openapi).

For each answer under the document's server prefix (/api/v1): the app's URL rule gives
the OpenAPI path template, the method and status give the documented response, and the
body is validated with a JSON Schema (2020-12) validator, $refs resolved in the
document's components. A route, method or status the document does not list is drift
too, and so is a request body the server accepted (2xx) that the document forbids.
Validators are compiled once per (operation, status) and reused for the whole session.
"""
from __future__ import annotations

import json
import os
import threading

from flask.testing import FlaskClient
from werkzeug.exceptions import MethodNotAllowed, NotFound

DOC_URI = "urn:slapfed:openapi"
METHODS = ("get", "put", "post", "delete", "patch")


# Set (by the marker openapi_injected_errors) while a test makes a route raise errors it
# never raises for real: any error status is then accepted, with the one error body.
INJECTED_ERRORS = False


class ContractDrift(AssertionError):
    """The master answered something its OpenAPI document does not describe."""


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _openapi_path(rule: str, prefix: str) -> str:
    """/api/v1/computers/<cid>/software/<path:h> -> /computers/{cid}/software/{h}"""
    out, rest = [], rule[len(prefix):]
    while "<" in rest:
        head, tail = rest.split("<", 1)
        var, rest = tail.split(">", 1)
        out += [head, "{", var.rsplit(":", 1)[-1], "}"]
    return "".join(out) + rest


class Contract:
    """The document, and validators compiled on first use."""

    def __init__(self, doc: dict):
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012
        Draft202012Validator.check_schema({"$defs": doc["components"]["schemas"]})
        self.doc = doc
        self.prefix = doc["servers"][0]["url"]
        self._registry = Registry().with_resource(
            DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
        self._validator_class = Draft202012Validator
        self._validators: dict = {}
        self._lock = threading.Lock()

    def _validator(self, pointer: str):
        with self._lock:
            v = self._validators.get(pointer)
            if v is None:
                v = self._validators[pointer] = self._validator_class(
                    {"$ref": f"{DOC_URI}#{pointer}"}, registry=self._registry,
                    format_checker=self._validator_class.FORMAT_CHECKER)
            return v

    def _resolve(self, node: dict, pointer: str) -> tuple[dict, str]:
        while "$ref" in node:
            pointer = node["$ref"][1:]
            node = self.doc
            for part in pointer.strip("/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer

    @staticmethod
    def _errors(validator, instance) -> list[str]:
        out = []
        for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.path))[:5]:
            while err.context:         # oneOf/anyOf: the alternative that came closest
                err = min(err.context, key=lambda e: (e.validator == "type", -len(e.path)))
            where = "/".join(str(p) for p in err.absolute_path) or "(the body)"
            out.append(f"  at {where}: {err.message[:400]}")
        return out

    def check(self, app, method: str, path: str, status: int, mimetype: str | None,
              body: bytes, request_json=None, has_request_json=False) -> list[str]:
        """The drift of one answer (empty: it matches the document)."""
        if not path.startswith(self.prefix + "/"):
            return []
        method = method.lower()
        where = f"{method.upper()} {path} -> {status}"
        try:
            rule, _ = app.url_map.bind("localhost").match(path, method.upper(),
                                                         return_rule=True)
        except (NotFound, MethodNotAllowed) as exc:
            # No route: the answer must be the documented error body of that status.
            expected = 404 if isinstance(exc, NotFound) else 405
            if status != expected:
                return [f"{where}: no route matches, expected {expected}"]
            pointer = _pointer("components", "responses", f"E{expected}", "content",
                               "application/json", "schema")
            return self._check_body(where, pointer, mimetype, body)
        except Exception:       # a redirect (e.g. a trailing slash): not an API answer
            return []
        template = _openapi_path(rule.rule, self.prefix)
        op = self.doc["paths"].get(template, {}).get(method)
        if op is None:
            return [f"{where}: the route {method.upper()} {template} is not in the "
                    "OpenAPI document"]
        op_pointer = _pointer("paths", template, method)
        problems = []
        if has_request_json and 200 <= status < 300 and "requestBody" in op:
            schema_ptr = op_pointer + _pointer("requestBody", "content",
                                               "application/json", "schema")
            errs = self._errors(self._validator(schema_ptr), request_json)
            if errs:
                problems.append(f"{where}: the server accepted a request body the "
                                f"document forbids ({template} {method}):\n"
                                + "\n".join(errs))
        resp = op["responses"].get(str(status))
        if resp is None and INJECTED_ERRORS and status >= 400:
            pointer = _pointer("components", "responses", "E500", "content",
                               "application/json", "schema")
            return problems + self._check_body(where, pointer, mimetype, body)
        if resp is None:
            return problems + [f"{where}: status {status} is not documented for "
                               f"{method.upper()} {template} (documented: "
                               f"{', '.join(sorted(op['responses']))}); body: "
                               f"{body[:300]!r}"]
        resp, resp_ptr = self._resolve(resp, op_pointer + _pointer("responses", str(status)))
        content = resp.get("content")
        if not content:
            if body:
                problems.append(f"{where}: the document says no body, got {body[:200]!r}")
            return problems
        if mimetype not in content:
            return problems + [f"{where}: content type {mimetype!r}, documented: "
                               f"{sorted(content)}"]
        if mimetype != "application/json":
            return problems
        pointer = resp_ptr + _pointer("content", mimetype, "schema")
        return problems + self._check_body(where, pointer, mimetype, body)

    def _check_body(self, where, pointer, mimetype, body) -> list[str]:
        if mimetype != "application/json":
            return [f"{where}: content type {mimetype!r}, documented: application/json"]
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return [f"{where}: the body is not JSON ({exc})"]
        errs = self._errors(self._validator(pointer), data)
        if errs:
            return [f"{where}: the body does not match {pointer[1:]}:\n" + "\n".join(errs)]
        return []


_CONTRACT: Contract | None = None


def contract() -> Contract:
    """The session's Contract (built, and its document checked, on first use)."""
    global _CONTRACT
    if _CONTRACT is None:
        from slapfed.master.openapi import openapi_document
        _CONTRACT = Contract(openapi_document())
    return _CONTRACT


class ContractClient(FlaskClient):
    """A Flask test client that checks every answer of a master app against the OpenAPI
    document (ContractDrift, naming the operation, status and schema error)."""

    def open(self, *args, **kwargs):
        has_json = "json" in kwargs
        request_json = kwargs.get("json")
        if not has_json and isinstance(kwargs.get("data"), (bytes, str)):
            try:
                request_json, has_json = json.loads(kwargs["data"]), True
            except (ValueError, RecursionError):     # not JSON, or deeper than Python goes
                pass
        response = super().open(*args, **kwargs)
        app = self.application
        from slapfed.master.runtime import EXTENSION
        if EXTENSION not in app.extensions or response.request is None:
            return response
        req = response.request
        problems = contract().check(app, req.method, req.path, response.status_code,
                                    response.mimetype, response.get_data(),
                                    request_json, has_json)
        if problems and os.environ.get("SLAPFED_CONTRACT_LOG"):
            with open(os.environ["SLAPFED_CONTRACT_LOG"], "a") as log:
                log.write("\n".join(problems) + "\n")
        elif problems:
            raise ContractDrift("the answer drifts from the OpenAPI document:\n"
                                + "\n".join(problems))
        return response
