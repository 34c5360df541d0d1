"""Logs for operators: the JSON and text formats, the set-up every long-running command
shares, and the master's request ids and access lines (Flask test client over a real
FileStorage)."""
import datetime as dt
import io
import json
import logging

import pytest

from slapfed import logs
from slapfed.master.access import REDACTED, loggable_path, request_id_from
from slapfed.master.openapi import openapi_document

API = "/api/v1"


def record(msg="hello %s", args=("world",), level=logging.INFO, name="slapfed.test",
           exc_info=None, **extra):
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def _raised():
    try:
        raise ValueError("bad thing")
    except ValueError:
        import sys
        return sys.exc_info()


# -- the JSON formatter -------------------------------------------------------------------
JSON_CASES = [
    ("plain", record(), {"level": "info", "logger": "slapfed.test", "message": "hello world"}),
    ("fields", record("GET /x -> 200", (), request_id="r1", principal="admin/local",
                      method="GET", path="/x", status=200, duration_ms=1.5),
     {"request_id": "r1", "principal": "admin/local", "method": "GET", "path": "/x",
      "status": 200, "duration_ms": 1.5}),
    ("warning", record(level=logging.WARNING), {"level": "warning"}),
    ("newline stays inside the string", record("a\nb", ()), {"message": "a\nb"}),
    ("a field cannot replace a base key", record(logger_="x", **{"ts_": 1}),
     {"logger": "slapfed.test"}),
    ("not JSON-able field as text", record(when=dt.date(2024, 5, 1)), {"when": "2024-05-01"}),
]


@pytest.mark.parametrize("rec,expected", [c[1:] for c in JSON_CASES],
                         ids=[c[0] for c in JSON_CASES])
def test_json_formatter_writes_one_object_per_line(rec, expected):
    line = logs.JsonFormatter().format(rec)
    assert "\n" not in line
    out = json.loads(line)
    assert {"ts", "level", "logger", "message"} <= set(out)
    assert out["ts"].endswith("Z")
    assert dt.datetime.fromisoformat(out["ts"].replace("Z", "+00:00")).utcoffset() \
        == dt.timedelta(0)
    for key, value in expected.items():
        assert out[key] == value


def test_json_formatter_renders_an_exception_as_one_string_field():
    line = logs.JsonFormatter().format(record("failed", (), level=logging.ERROR,
                                              exc_info=_raised()))
    assert "\n" not in line
    out = json.loads(line)
    assert isinstance(out["exception"], str)
    assert "Traceback" in out["exception"] and "ValueError: bad thing" in out["exception"]


def test_iso_utc_is_iso_8601_in_utc_with_milliseconds():
    assert logs.iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert logs.iso_utc(1714564800.1234) == "2024-05-01T12:00:00.123Z"


# -- the text formatter -------------------------------------------------------------------
def test_text_formatter_keeps_every_record_on_lines_of_its_own():
    text = logs.TextFormatter().format(record("tail:\n%s", ("2024-01-01 INFO forged\x1b[2J",),
                                              exc_info=_raised()))
    first, *rest = text.split("\n")
    assert first.endswith("INFO slapfed.test: tail:")
    assert rest and all(line.startswith("    ") for line in rest)   # continuations
    assert "\x1b" not in text and "\\x1b" in text
    assert "ValueError: bad thing" in text


def test_text_formatter_names_the_request_and_its_principal():
    text = logs.TextFormatter().format(record(request_id="r1", principal="person/alice"))
    assert text.endswith("hello world [r1 person/alice]")


@pytest.mark.parametrize("url,shown", [
    ("https://user:pw@example.org/x.cfg", "https://REDACTED@example.org/x.cfg"),
    ("git+https://tok@github.com/a/b", "git+https://REDACTED@github.com/a/b"),
    ("https://example.org/a@b.cfg", "https://example.org/a@b.cfg"),
    ("/srv/releases/hello/software.cfg", "/srv/releases/hello/software.cfg"),
], ids=["user-password", "token-as-user", "at-in-path", "local-path"])
def test_redact_url_drops_credentials(url, shown):
    assert logs.redact_url(url) == shown


# -- configure ----------------------------------------------------------------------------
@pytest.fixture
def restore_logging():
    """Put the process's logging back as it was (configure changes process state)."""
    root, base, access = (logging.getLogger(), logging.getLogger(logs.ROOT),
                          logging.getLogger(logs.ACCESS))
    saved = (list(root.handlers), root.level, base.level, access.disabled, access.propagate,
             list(access.handlers))
    yield
    for logger in (root, access):
        for h in list(logger.handlers):
            if getattr(h, "_slapfed", False):
                logger.removeHandler(h)
                h.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    base.setLevel(saved[2])
    access.disabled, access.propagate = saved[3], saved[4]
    access.handlers[:] = saved[5]


def test_configure_json_to_a_file_levels_and_access(tmp_path, restore_logging):
    path = tmp_path / "slapfed.log"
    logs.configure("debug", "json", str(path))
    logs.configure("warning", "json", str(path))        # again: replaces, never doubles
    logging.getLogger("slapfed.x").info("not at warning")
    logging.getLogger("slapfed.x").warning("kept")
    logging.getLogger("ZODB.x").info("library info is dropped")
    logging.getLogger("ZODB.x").warning("library warning is kept")
    logs.configure("info", "json", str(path), access=False)
    logging.getLogger(logs.ACCESS).info("no access line")
    logging.getLogger("slapfed.x").info("info now")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(o["logger"], o["message"]) for o in lines] == [
        ("slapfed.x", "kept"), ("ZODB.x", "library warning is kept"),
        ("slapfed.x", "info now")]


def test_configure_sends_access_lines_to_their_own_file(tmp_path, restore_logging):
    main, access = tmp_path / "main.log", tmp_path / "access.log"
    logs.configure("info", "text", str(main), access_file=str(access))
    logging.getLogger(logs.ACCESS).info("GET /x -> 200")
    logging.getLogger("slapfed.y").info("something else")
    assert "GET /x" in access.read_text() and "GET /x" not in main.read_text()
    assert "something else" in main.read_text()


def test_configure_refuses_unknown_levels_and_formats(restore_logging):
    with pytest.raises(ValueError, match="log level"):
        logs.configure("verbose")
    with pytest.raises(ValueError, match="log format"):
        logs.configure("info", "xml")


def test_log_lines_go_to_the_process_stderr_not_to_a_swapped_sys_stderr(
        restore_logging, monkeypatch, capfd):
    logs.configure("info", "text")
    swapped = io.StringIO()                 # e.g. a command's output being captured
    monkeypatch.setattr("sys.stderr", swapped)
    logging.getLogger("slapfed.z").info("to the real stderr")
    assert "to the real stderr" not in swapped.getvalue()
    assert "to the real stderr" in capfd.readouterr().err


# -- request ids and the access line (Flask test client) ----------------------------------
@pytest.mark.parametrize("given,kept", [
    ("abc-123", True), ("a" * 64, True), ("req.1:2_3", True),
    ("a" * 65, False), ("", False), ("-leading-dash", False), ("has space", False),
    ("new\nline", False), ("é", False), ("<script>", False),
], ids=["simple", "64-chars", "punctuation", "65-chars", "empty", "leading-dash",
        "space", "newline", "non-ascii", "markup"])
def test_request_id_kept_only_when_sane(given, kept):
    rid = request_id_from(given)
    assert (rid == given) is kept
    if not kept:
        assert len(rid) == 32 and all(c in "0123456789abcdef" for c in rid)


@pytest.mark.parametrize("path,query,shown", [
    ("/api/v1/instances", "", "/api/v1/instances"),
    ("/api/v1/instances", "state=started&status=failed",
     "/api/v1/instances?state=started&status=failed"),
    ("/api/v1/x", "token=sft1.secret&password=hunter2",
     f"/api/v1/x?token={REDACTED}&password={REDACTED}"),
    ("/api/v1/x", "reference=a%0Ab", "/api/v1/x?reference=a%0Ab"),
    ("/api/v1/a\nb", "", "/api/v1/a\\nb"),
], ids=["no-query", "harmless-filters", "secrets-redacted", "encoded-newline",
        "raw-newline"])
def test_loggable_path_redacts_query_values_and_escapes(path, query, shown):
    assert loggable_path(path, query) == shown


def test_loggable_path_is_bounded():
    assert len(loggable_path("/" + "x" * 5000)) <= 515


def _access_lines(caplog):
    return [r for r in caplog.records if r.name == logs.ACCESS]


def test_error_body_header_and_access_line_share_the_request_id(api, caplog):
    caplog.set_level(logging.INFO, logger="slapfed")
    resp = api.get(f"{API}/computers/nope", headers={"X-Request-Id": "probe-42"})
    assert resp.status_code == 404
    assert resp.headers["X-Request-Id"] == "probe-42"
    assert resp.json["error"]["request_id"] == "probe-42"
    (line,) = _access_lines(caplog)
    assert (line.request_id, line.principal, line.method, line.path, line.status,
            line.error) == ("probe-42", "admin/local", "GET", "/api/v1/computers/nope",
                            404, "not_found")
    assert line.duration_ms >= 0


def test_an_insane_request_id_is_replaced_and_the_new_one_used_everywhere(api, caplog):
    caplog.set_level(logging.INFO, logger="slapfed")
    resp = api.post(f"{API}/computers", data=b"{not json",
                    content_type="application/json",
                    headers={"X-Request-Id": "x" * 200})
    assert resp.status_code == 400
    rid = resp.headers["X-Request-Id"]
    assert rid != "x" * 200 and resp.json["error"]["request_id"] == rid
    assert [r.request_id for r in _access_lines(caplog)] == [rid]


def test_a_successful_request_has_an_id_and_an_access_line(api, caplog):
    caplog.set_level(logging.INFO, logger="slapfed")
    resp = api.get(f"{API}/health")
    assert resp.status_code == 200 and resp.headers["X-Request-Id"] and resp.json
    (line,) = _access_lines(caplog)
    assert line.status == 200 and line.request_id == resp.headers["X-Request-Id"]
    assert not hasattr(line, "error")


def test_lines_logged_during_a_request_carry_its_id_and_principal(api):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.RequestIdFilter())
    handler.setFormatter(logs.JsonFormatter())
    base = logging.getLogger(logs.ROOT)
    level = base.level
    base.addHandler(handler)
    base.setLevel(logging.INFO)
    try:
        resp = api.post(f"{API}/computers", json={"id": "c9", "partitions": []},
                        headers={"X-Request-Id": "reg-1"})
        resp.get_data()                     # the access line comes once the body is sent
        logging.getLogger("slapfed.test").info("after the request")
    finally:
        base.removeHandler(handler)
        base.setLevel(level)
    assert resp.status_code == 201
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    (registered,) = [o for o in lines if o["logger"] == "slapfed.master.computers"]
    assert registered["message"] == "computer c9 registered by admin/local: 0 partition(s)"
    assert registered["request_id"] == "reg-1" and registered["principal"] == "admin/local"
    assert registered["computer"] == "c9"
    (access,) = [o for o in lines if o["logger"] == logs.ACCESS]
    assert access["request_id"] == "reg-1" and access["status"] == 201
    (after,) = [o for o in lines if o["message"] == "after the request"]
    assert "request_id" not in after and "principal" not in after   # the request is over


def test_no_access_log_turns_the_access_line_off(master_db, caplog):
    from slapfed.master import close_app, create_app
    app = create_app({"INSECURE": True, "DB": master_db, "ACCESS_LOG": False})
    try:
        caplog.set_level(logging.INFO, logger="slapfed")
        resp = app.test_client().get(f"{API}/health")
        resp.get_data()
        assert resp.headers["X-Request-Id"]             # the id is still answered
        assert _access_lines(caplog) == []
    finally:
        close_app(app)


def test_openapi_error_schema_describes_the_request_id(api):
    resp = api.get(f"{API}/computers/nope")
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorInfo"}
    schema = schemas["ErrorInfo"]
    assert set(resp.json["error"]) <= set(schema["properties"])
    assert set(schema["required"]) <= set(resp.json["error"])


def test_an_unchanged_desired_state_poll_logs_at_debug_only(api, caplog):
    caplog.set_level(logging.DEBUG, logger="slapfed")
    assert api.post(f"{API}/computers", json={"id": "c1", "partitions": []}).status_code == 201
    first = api.get(f"{API}/computers/c1/desired-state")
    first.get_data()
    again = api.get(f"{API}/computers/c1/desired-state",
                    headers={"If-None-Match": first.headers["ETag"]})
    again.get_data()
    assert again.status_code == 304
    levels = {r.status: r.levelno for r in _access_lines(caplog) if r.path.endswith("state")}
    assert levels == {200: logging.INFO, 304: logging.DEBUG}


def test_no_access_log_and_an_access_log_file_contradict(tmp_path):
    from click.testing import CliRunner

    from slapfed.cli.main import cli
    result = CliRunner().invoke(cli, ["master", "serve", "--data", str(tmp_path / "m"),
                                      "--insecure-http", "--no-access-log",
                                      "--access-log", str(tmp_path / "access.log")])
    assert result.exit_code == 3, result.output
    assert "--no-access-log and --access-log FILE contradict" in result.output
    assert not (tmp_path / "m").exists()
