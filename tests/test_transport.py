"""The client's HTTP/1.1 transport over real loopback sockets: connections are kept alive
and reused, one the server closed meanwhile is replaced, a read past its timeout and a
refused connection surface as the errors the client maps to MasterUnreachable, and the
query, body and headers go out as given. (TLS, client certificates and the TLS alerts
are proven end to end by test_cli_tls_refusals.py, test_authz_tls.py and others.)"""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slapfed.client import MasterClient
from slapfed.core.errors import InvalidInput, MasterUnreachable
from slapfed.transport import TRANSPORT_ERRORS, Transport


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive unless told otherwise

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.peers.append(self.client_address)
        if self.path.endswith("/hang"):
            server.release.wait(30)
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path.startswith("/then-close"):
            self.close_connection = True     # closes without saying so first

    def do_POST(self):
        self.server.peers.append(self.client_address)
        data = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"got": json.loads(data), "type": self.headers["Content-Type"]})
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.peers, srv.release = [], threading.Event()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def test_a_connection_is_kept_alive_and_reused(server):
    srv, url = server
    t = Transport()
    for _ in range(3):
        assert t.get(url + "/a").status_code == 200
    assert len({port for _host, port in srv.peers}) == 1
    t.close()


def test_a_connection_the_server_closed_is_replaced(server):
    srv, url = server
    t = Transport()
    assert t.get(url + "/then-close").json()["path"] == "/then-close"
    assert t.get(url + "/next").json()["path"] == "/next"
    assert len({port for _host, port in srv.peers}) == 2


def test_query_body_and_headers_go_out_as_given(server):
    _srv, url = server
    t = Transport()
    seen = t.get(url + "/q?x=1", params={"a": "b c", "skip": None},
                 headers={"If-None-Match": '"e"'}).json()
    assert seen["path"] == "/q?x=1&a=b+c"
    assert seen["headers"]["If-None-Match"] == '"e"'
    assert seen["headers"]["User-Agent"].startswith("slapfed/")
    resp = t.request("POST", url + "/p", body=b'{"k": [1]}',
                     headers={"Content-Type": "application/json"})
    assert resp.status_code == 201 and resp.json() == {"got": {"k": [1]},
                                                       "type": "application/json"}


def test_a_read_past_its_timeout_raises_a_transport_error(server):
    _srv, url = server
    with pytest.raises(TRANSPORT_ERRORS):
        Transport().get(url + "/hang", timeout=(2.0, 0.2))


def test_the_client_maps_no_answer_to_master_unreachable(server):
    _srv, url = server
    with pytest.raises(MasterUnreachable, match="timed out"):
        MasterClient(url, timeout=0.2)._call("GET", "/hang")
    with socket.socket() as free:           # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(MasterUnreachable, match="cannot reach the master"):
        MasterClient(f"http://127.0.0.1:{port}", timeout=2)._call("GET", "/health")


@pytest.mark.parametrize("files, field", [
    ({"ca": "missing-ca.crt"}, "ca"),
    ({"cert": "missing.crt", "key": "missing.key"}, "cert"),
], ids=["ca", "cert"])
def test_a_tls_file_that_cannot_be_read_is_invalid_input_naming_it(tmp_path, files, field):
    files = {k: str(tmp_path / v) for k, v in files.items()}
    with pytest.raises(InvalidInput) as caught:
        MasterClient("https://127.0.0.1:9", **files).health()   # refused before connecting
    assert caught.value.details[0]["field"] == field
    assert files[field] in caught.value.message


def test_the_cli_exits_3_for_a_ca_file_that_cannot_be_read(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from slapfed.cli.main import cli

    config = tmp_path / "client.json"
    config.write_text(json.dumps({"master": "https://127.0.0.1:9",
                                  "ca": str(tmp_path / "gone.crt")}))
    monkeypatch.setenv("SLAPFED_CONFIG", str(config))
    out = CliRunner().invoke(cli, ["whoami"])
    assert out.exit_code == 3 and "gone.crt" in out.output
