"""End to end, peers declared in a topology file: master e invites d (`slapfed peer
invite --out`), a topology file links d and e and names the invitation, and d, started
with that file, pairs with e by itself; `slapfed topology show` prints the link's state;
a restart keeps the pairing (the token is used once); a wrong invitation stops the
master from starting, naming the link and the file. Real masters over mutual TLS."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.client import MasterClient
from slapfed.procs import Proc, slapfed_argv, wait_for

pytestmark = pytest.mark.timeout(300)

HELLO = str(Path(__file__).resolve().parents[1] / "profiles" / "hello" / "software.cfg")


class Running:
    def __init__(self, base: Path, name: str, *extra: str):
        self.base, self.name, self.data = base, name, base / name
        self.extra = extra
        self.listen = "127.0.0.1:0"
        self.proc = None

    def start(self):
        self.proc = Proc(slapfed_argv("master", "serve", "--data", str(self.data), "--name",
                                      self.name, "--listen", self.listen,
                                      "--peer-retry-max", "1", *self.extra),
                         self.base / f"{self.name}.log")
        url_file = self.data / "master.url"
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 f"master {self.name} URL", proc=self.proc)
        self.url = url_file.read_text().strip()
        self.listen = self.url.split("://", 1)[1]
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def admin(self) -> tuple[MasterClient, Path]:
        """An admin client, and a CLI config file acting as the same admin."""
        d = self.base / f"{self.name}-ops"
        if not (d / "identity.crt").exists():
            CertificateAuthority(self.data / "ca").issue_with_new_key(ids.admin("ops"), d)
        conf = self.base / f"{self.name}-cli.json"
        conf.write_text(json.dumps({"master": self.url, "ca": str(d / "ca.crt"),
                                    "cert": str(d / "identity.crt"),
                                    "key": str(d / "identity.key")}))
        return MasterClient(self.url, ca=str(d / "ca.crt"), cert=str(d / "identity.crt"),
                            key=str(d / "identity.key")), conf


def cli(conf: Path, *args: str, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SLAPFED_CONFIG": str(conf)}
    env.pop("SLAPFED_MASTER", None)
    out = subprocess.run(slapfed_argv(*args), env=env, capture_output=True, text=True,
                         timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


TOPOLOGY = """
[sites.europe.fr.par]
hosts = ["par-1"]

[sites.asia.jp.tyo]
hosts = ["tyo-1"]

[[masters]]
name = "d"
site = "par-1"

[[masters]]
name = "e"
site = "tyo-1"

[[links]]
from = "d"
to = "e"
latency_ms = 210
cost = 2
trust = "delegate"
invitation = "{invitation}"
"""


@pytest.fixture
def pair_world(tmp_path):
    running = []
    try:
        e = Running(tmp_path, "e").start()
        running.append(e)
        yield tmp_path, e, running
    finally:
        for m in running:
            m.stop()


def test_a_peer_declared_in_the_topology_pairs_by_itself(pair_world):
    base, e, running = pair_world
    _e_admin, e_conf = e.admin()
    (base / "invitations").mkdir()
    cli(e_conf, "peer", "invite", "d", "--out", str(base / "invitations" / "e-for-d.json"))
    topo = base / "federation.toml"
    topo.write_text(TOPOLOGY.format(invitation="invitations/e-for-d.json"))

    d = Running(base, "d", "--topology", str(topo)).start()
    running.append(d)
    d_admin, d_conf = d.admin()

    def paired():
        peers = {p["name"]: p for p in d_admin.list_peers()}
        return peers.get("e") if peers.get("e", {}).get("paired") else None
    peer = wait_for(paired, 30, "d to pair with e from its topology file", proc=d.proc)
    assert (peer["origin"], peer["principal"], peer["trust"], peer["latency_ms"],
            peer["cost"], peer["site"]) == ("topology", "master/d", "delegate", 210.0,
                                            2.0, "tyo-1")
    wait_for(lambda: d_admin.show_peer("e")["link"] == "up", 30, "the link to be up")

    # the link and its state in `slapfed topology show`
    shown = cli(d_conf, "topology", "show").stdout
    line = next(ln for ln in shown.splitlines() if ln.strip().startswith("e ")
                and "topology" in ln)
    assert "up" in line and "trust delegate" in line and "pending 0/0 forwards" in line
    as_json = json.loads(cli(d_conf, "topology", "show", "--json").stdout)
    assert [(p["name"], p["link"], p["origin"]) for p in as_json["peers"]] == \
        [("e", "up", "topology")]

    # a request whose SLA names e is delegated there under the deterministic reference
    # (e has a computer with a free partition; no node runs on it: accepting is enough)
    e_admin = e.admin()[0]
    e_admin.register_computer({"id": "e-node", "host": "tyo-1", "partitions": [
        {"id": "p0", "address": "127.0.0.77", "port_base": 10000, "port_count": 10}]})
    e_admin.supply("e-node", HELLO)
    inst = d_admin.request("far", HELLO, sla={"master": "e"})
    wait_for(lambda: (d_admin.show(inst["id"])["delegation"] or {}).get("accepted"), 30,
             "e to accept the delegation")
    at_e = [i for i in e_admin.list_instances() if i["requester"] == "master/d"]
    assert [i["reference"] for i in at_e] == ["d:admin/ops:far"]

    # a restart of d keeps the pairing: the (spent) token is not tried again
    d.stop()
    d.start()
    again = d_admin.show_peer("e")
    assert again["paired"] and again["principal"] == "master/d"
    wait_for(lambda: d_admin.show_peer("e")["link"] == "up", 30, "the link to come back")
    assert d_admin.show_peer("e")["last_error"] is None
    # `slapfed peer set` changes the link's facts; the pairing and the origin stay
    out = cli(d_conf, "peer", "set", "e", "--cost", "5", "--latency-ms", "190").stdout
    assert "peer e: trust delegate, cost 5, latency 190.0 ms, site tyo-1" in out
    peer = d_admin.show_peer("e")
    assert (peer["cost"], peer["latency_ms"], peer["origin"], peer["paired"]) == \
        (5.0, 190.0, "topology", True)
    refused = cli(d_conf, "peer", "set", "e", "--cost", "-1", check=False)
    assert refused.returncode == 3 and "cost" in refused.stderr
    d_admin.destroy(inst["id"])
    wait_for(lambda: e_admin.show(at_e[0]["id"])["requested_state"] == "destroyed", 30,
             "the destruction to reach e")


def test_a_wrong_invitation_stops_the_master_naming_the_link(tmp_path):
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps({"peer": "x", "for": "d", "url": "https://127.0.0.1:1",
                               "token": "t", "ca_certificate": "-----BEGIN CERTIFICATE-----",
                               "principal": "master/d"}))
    topo = tmp_path / "federation.toml"
    topo.write_text(TOPOLOGY.format(invitation="inv.json"))
    out = subprocess.run(slapfed_argv("master", "serve", "--data", str(tmp_path / "d"),
                                      "--name", "d", "--listen", "127.0.0.1:0",
                                      "--topology", str(topo)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr
    assert "links[0].invitation" in out.stderr and str(inv) in out.stderr
    assert "invites 'd' to 'x', but the link joins 'd' and 'e'" in out.stderr
    assert not (tmp_path / "d" / "master.url").exists()


def test_peer_invite_then_peer_add_over_the_cli(pair_world):
    """The two commands of the README's pairing, with link facts given to `peer add`."""
    base, e, running = pair_world
    _e_admin, e_conf = e.admin()
    invitation = base / "e-for-f.json"
    cli(e_conf, "peer", "invite", "f", "--out", str(invitation))
    assert oct(invitation.stat().st_mode & 0o777) == "0o600"
    f = Running(base, "f").start()
    running.append(f)
    f_admin, f_conf = f.admin()
    out = cli(f_conf, "peer", "add", str(invitation), "--trust", "observe", "--cost", "2",
              "--site", "tyo-1").stdout
    assert "paired with e at" in out and "as master/f" in out
    peer = f_admin.show_peer("e")
    assert (peer["paired"], peer["origin"], peer["trust"], peer["cost"], peer["site"],
            peer["latency_ms"]) == (True, "cli", "observe", 2.0, "tyo-1", None)
    again = cli(f_conf, "peer", "add", str(invitation), check=False)   # the token is spent
    assert again.returncode != 0 and "token" in again.stderr.lower()
