"""The transport writes and reads HTTP/1.1 messages itself (not through http.client,
whose import costs a command's start-up): what it sends is byte for byte what
http.client sends, and what it reads of an answer (status, headers, body, whether the
connection closes) is what http.client reads, or both refuse it. http.client is the
reference here, over a real socket pair."""
import http.client
import socket

import pytest

from slapfed.transport import TRANSPORT_ERRORS, _read_answer, _request_head


class _Capture:
    def __init__(self):
        self.sent = b""

    def sendall(self, data):
        self.sent += data


@pytest.mark.parametrize("method, target, host, port, headers, body", [
    ("GET", "/api/v1/x?a=1", "127.0.0.1", 34841, {"User-Agent": "slapfed", "Accept": "*/*"},
     None),
    ("POST", "/api/v1/y", "master.example", 443,
     {"Accept": "*/*", "Content-Type": "application/json"}, b'{"a": 1}'),
    ("PUT", "/p", "::1", 80, {"If-None-Match": '"abc"'}, None),       # Content-Length: 0
    ("DELETE", "/p", "h", 8080, {"Host": "other", "accept-encoding": "gzip"}, None),
    ("POST", "/p", "h", 1, {"Content-Length": "2"}, b"{}"),
    ("GET", "/p", "h", 1, {"X-Folded": "a\r\n b", "X-Int": 3, "X-Bytes": b"v"}, None),
])
def test_a_request_is_written_as_http_client_writes_it(method, target, host, port,
                                                       headers, body):
    conn = http.client.HTTPConnection(host, port)
    conn.sock = _Capture()
    conn.request(method, target, body=body, headers=headers)
    assert _request_head(method, target, host, port, headers, body) + (body or b"") \
        == conn.sock.sent


@pytest.mark.parametrize("method, target, headers", [
    ("GET", "/a b", {}),                          # a space would end the target
    ("GET", "/a\r\nX: y", {}),
    ("G\nET", "/", {}),
    ("GET", "/", {"X": "a\r\nInjected: c"}),      # a value would start a header
    ("GET", "/", {"X:Y": "a"}),
    ("GET", "/", {" X": "a"}),
    ("GET", "/", {"": "a"}),
    ("GET", "/", {"X\nY": "a"}),
    ("GET", "/", {"X": "a\rb"}),
    ("GET", "/\x7f", {}),
    ("GET", "/é", {}),                            # not ASCII
])
def test_what_could_split_the_message_is_refused_before_sending(method, target, headers):
    with pytest.raises(ValueError):
        _request_head(method, target, "h", 1, headers, None)


ANSWERS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhello",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nSlapfed-Epoch: 3\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n3\r\nabc\r\n"
    b"0\r\nTrailer: 1\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nup to the end",
    b"HTTP/1.1 200 OK\r\n\r\nno length: up to the end",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n"
    b"X-Folded: a\r\n b\r\n\r\nbig",
    b"HTTP/1.1 204 No Content\r\nX:  spaced  \r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\nnegative: up to the end",
    # refused by both
    b"",
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"HTTP/1.1 99 Low\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
]


def _sent(data: bytes):
    ours, theirs = socket.socketpair()
    ours.sendall(data)
    ours.close()
    return theirs


def _as_http_client_reads(data: bytes):
    conn = http.client.HTTPConnection("h")
    conn.sock = sock = _sent(data)
    conn._HTTPConnection__state = "Request-sent"    # (the request went out)
    try:
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, list(resp.headers.items()), body, resp.will_close
    except (OSError, http.client.HTTPException):
        return "refused"
    finally:
        sock.close()


def _as_we_read(data: bytes):
    sock = _sent(data)
    try:
        status, headers, body, will_close = _read_answer(sock, "GET")
        return status, headers.items(), body, will_close
    except TRANSPORT_ERRORS:
        return "refused"
    finally:
        sock.close()


@pytest.mark.parametrize("answer", ANSWERS, ids=range(len(ANSWERS)))
def test_an_answer_is_read_as_http_client_reads_it(answer):
    assert _as_we_read(answer) == _as_http_client_reads(answer)


def test_a_gzip_encoded_answer_is_decoded_within_a_bound():
    """What the master compresses (a large desired state) comes out decoded; a body
    that is not gzip, stops short or decodes past the bound is refused, never held."""
    import zlib
    from slapfed.transport import HTTPError, IncompleteRead, _gunzip

    def gz(data):
        packer = zlib.compressobj(3, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return packer.compress(data) + packer.flush()
    doc = b'{"partitions": [' + b'{"id": "p"},' * 5000 + b"{}]}"
    assert _gunzip(gz(doc)) == doc
    with pytest.raises(HTTPError, match="does not decode"):
        _gunzip(b"not gzip at all")
    with pytest.raises(IncompleteRead):
        _gunzip(gz(doc)[:-20])
    with pytest.raises(HTTPError, match="more than 1000 bytes"):
        _gunzip(gz(b"0" * 10_000_000), limit=1000)     # 10 MB from about 10 kB
