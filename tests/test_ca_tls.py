"""The certificates work for mutual TLS with Python's ssl module (what gunicorn uses), checked
in memory (ssl.MemoryBIO, no sockets): a master's server certificate, a client certificate,
and the refusals the TLS layer itself makes before the application sees anything."""
import datetime as dt
import ssl

import pytest

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority


def handshake(server_ctx, client_ctx, hostname="master-a.test"):
    """Run a TLS handshake between two contexts in memory; return the server's view of
    the client's certificate (DER) or raise ssl.SSLError."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end, out, peer_in in (("client", client, c_out, s_in), ("server", server, s_out, c_in)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass   # needs the other side's bytes: shuttled below
            data = out.read()
            if data:
                peer_in.write(data)
        if all(done.values()):
            # TLS 1.3 sends the client's certificate verdict after the handshake: read once.
            client.write(b"ping")
            s_in.write(c_out.read())
            assert server.read(4) == b"ping"
            return server.getpeercert(binary_form=True)
    raise AssertionError("handshake did not finish")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority.init(root / "ca", "master-a")
    server = ca.issue_with_new_key(ids.master("master-a"), root / "server",
                                   hosts=["master-a.test", "127.0.0.1"])
    alice = ca.issue_with_new_key(ids.person("alice"), root / "alice")
    other = CertificateAuthority.init(root / "other", "master-b")
    mallory = other.issue_with_new_key(ids.person("alice"), root / "mallory")
    return ca, server, alice, mallory


def server_context(ca, server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server.cert_path, server.key_path)
    ctx.load_verify_locations(cafile=ca.directory / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca_file, files=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=ca_file)
    if files is not None:
        ctx.load_cert_chain(files.cert_path, files.key_path)
    return ctx


def test_mutual_tls_then_the_ca_names_the_client(pki):
    ca, server, alice, _ = pki
    der = handshake(server_context(ca, server), client_context(alice.ca_path, alice))
    assert ca.verify(der) == ids.person("alice")


@pytest.mark.parametrize("case", ["no-client-certificate", "client-from-another-ca",
                                  "server-name-mismatch", "client-trusts-another-ca"])
def test_tls_refusals(pki, case):
    ca, server, alice, mallory = pki
    client, hostname = client_context(alice.ca_path, alice), "master-a.test"
    if case == "no-client-certificate":
        client = client_context(alice.ca_path)
    elif case == "client-from-another-ca":
        client = client_context(alice.ca_path, mallory)
    elif case == "server-name-mismatch":
        hostname = "elsewhere.test"
    else:
        client = client_context(mallory.ca_path, alice)
    with pytest.raises(ssl.SSLError):
        handshake(server_context(ca, server), client, hostname)


def test_the_server_certificate_is_valid_for_its_ip(pki):
    ca, server, alice, _ = pki
    assert handshake(server_context(ca, server), client_context(alice.ca_path, alice), "127.0.0.1")
