"""A client generator's view of the API: schemathesis generates requests from the OpenAPI
document a real development-mode master serves, sends them over loopback and checks
every answer (status documented, body matching its schema, content type, schema-valid
requests accepted, invalid ones refused, stateful links). Zero failures expected.

Left out, with the reason: POST /peers and PUT /instances/{iid}/child-master (they call
the URL in the body, and tests make no network access), GET /federation/changes (a long
poll of up to 60 s). Where a schema-valid body is refused for a reason no schema can say
(a CSR that does not parse, a parent or relative reference naming no instance), 400 is
an accepted answer of that operation.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import start_master_process, stop_process

pytestmark = pytest.mark.e2e

SEED = 20240601
MAX_EXAMPLES = 10
EXCLUDED = ("add_peer", "register_child_master", "federation_changes")
SEMANTIC_400 = ("request_instance", "explain_placement", "redeem_token", "certify_partition",
                "issue_certificate")


def _config() -> str:
    lines = []
    for op_id in SEMANTIC_400:
        lines += ["[[operations]]", f'include-operation-id = "{op_id}"',
                  "checks.positive_data_acceptance.expected-statuses = "
                  '["2XX", "3XX", "400", "401", "403", "404", "409", "422", "429", "5XX"]',
                  ""]
    return "\n".join(lines)


def test_schemathesis_finds_no_drift(tmp_path):
    proc, url = start_master_process(str(tmp_path / "master"), "--insecure-http")
    try:
        config = tmp_path / "schemathesis.toml"
        config.write_text(_config())
        report = tmp_path / "report.json"
        argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
                f"{url}/api/v1/openapi.json", "--url", f"{url}/api/v1",
                "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
                "--no-shrink", "--workers", "1", "--warnings", "off",
                "--request-timeout", "10", "--report", "ndjson",
                "--report-ndjson-path", str(report),
                *(a for op in EXCLUDED for a in ("--exclude-operation-id", op))]
        env = dict(os.environ, NO_COLOR="1", SCHEMATHESIS_TELEMETRY="false")
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(var, None)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
        assert "0 failures" in done.stdout or "No issues found" in done.stdout \
            or "passed" in done.stdout, done.stdout[-3000:]
        assert report.exists() and json.loads(report.read_text().splitlines()[0])
    finally:
        stop_process(proc)
