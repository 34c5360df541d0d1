"""A master app that is closing (its server stops): long polls answer at once with what
they have, closing waits for the requests being answered before closing the database,
and a request arriving after that answers 503 ``master_stopping`` in the one error body.
In process, over a real FileStorage; tests/test_federation_longpoll.py stops a real
master process under an open poll."""
import threading
import time

import pytest

from slapfed.master import close_app, create_app

API = "/api/v1"


@pytest.fixture
def app(tmp_path):
    app = create_app({"INSECURE": True, "DATA_DIR": str(tmp_path / "master")})
    app.config["TESTING"] = False
    yield app
    close_app(app)


def poll_in_thread(app, wait: float):
    answer = {}
    started = threading.Event()

    def run():
        client = app.test_client()
        started.set()
        t0 = time.monotonic()
        resp = client.get(f"{API}/federation/changes?wait={wait:g}")
        answer.update(status=resp.status_code, body=resp.json, took=time.monotonic() - t0)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait(5)
    return t, answer


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_closing_answers_an_open_long_poll_then_closes(app):
    state = app.extensions["slapfed"]
    t, answer = poll_in_thread(app, 30)
    wait_for(lambda: state._active == 1)          # the poll is being answered
    t0 = time.monotonic()
    close_app(app)
    closed_in = time.monotonic() - t0
    t.join(5)
    assert answer["status"] == 200, answer
    assert answer["body"]["instances"] == [] and "cursor" in answer["body"]
    assert answer["took"] < 2 and closed_in < 2
    assert state.closed and "slapfed" not in app.extensions


def test_begin_stop_answers_long_polls_while_the_app_still_serves(app):
    state = app.extensions["slapfed"]
    t, answer = poll_in_thread(app, 30)
    wait_for(lambda: state._active == 1)
    state.begin_stop()
    t.join(5)
    assert answer["status"] == 200 and answer["took"] < 2
    # still serving: other requests are answered as usual until the app closes
    assert app.test_client().get(f"{API}/health").status_code == 200


def test_a_request_after_closing_is_503_master_stopping(app):
    client = app.test_client()
    close_app(app)
    for method, path, kw in (("GET", "/health", {}), ("GET", "/federation/changes", {}),
                             ("POST", "/instances", {"json": {"reference": "x"}})):
        resp = client.open(API + path, method=method, **kw)
        assert resp.status_code == 503
        assert resp.json == {"error": {"code": "master_stopping", "message": resp.json[
            "error"]["message"], "details": []}}
        assert resp.headers["Retry-After"] == "1"


def test_a_request_the_database_closed_under_answers_503_without_a_traceback(app, caplog,
                                                                           monkeypatch):
    """The drain gave up on a request still running (a stuck write): what it does after
    the database closed is answered 503, logged as one line."""
    from slapfed.master import request as request_module
    from slapfed.master import meta
    state = app.extensions["slapfed"]
    release = threading.Event()
    entered = threading.Event()
    original = request_module.connection

    def slow_connection():
        entered.set()
        release.wait(10)
        return original()

    monkeypatch.setattr(meta, "connection", slow_connection)
    answer = {}
    t = threading.Thread(target=lambda: answer.update(
        resp=app.test_client().get(f"{API}/health")), daemon=True)
    t.start()
    entered.wait(5)
    state.DRAIN_TIMEOUT = 0.2
    try:
        close_app(app)
    finally:
        release.set()
    t.join(5)
    resp = answer["resp"]
    assert resp.status_code == 503 and resp.json["error"]["code"] == "master_stopping"
    assert not [r for r in caplog.records if r.exc_info]
