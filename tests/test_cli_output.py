"""What a person reads when a command fails: one line per problem, no Python reprs, no
detail that repeats the message (slapfed.cli.problems), for errors from the master and
raised locally alike."""
import datetime as dt

import pytest

from slapfed.cli import problems
from slapfed.cli.user_cmd import render_whoami, validity
from slapfed.core import claims, provenance
from slapfed.core.errors import InvalidInput, RecursionRefused
from slapfed.topology import files as topology_files

URL = "/srv/releases/hello/software.cfg"

# (detail, its line): one row per shape a detail has anywhere in slapfed.
LINES = [
    # wire, services, ca, placement configuration, federation: {field, problem}
    ({"field": "sla.colour", "problem": "unknown SLA key"}, "sla.colour: unknown SLA key"),
    # topology files: the field already says file:line: key
    ({"file": "a.toml", "line": 4, "key": "masters[0].site", "field": "a.toml:4: masters[0].site",
      "problem": "unknown site 'x'"}, "a.toml:4: masters[0].site: unknown site 'x'"),
    ({"file": "a.toml", "line": None, "key": "", "field": "a.toml",
      "problem": "cannot read the file: No such file or directory"},
     "a.toml: cannot read the file: No such file or directory"),
    # fact_not_owned: the problem says what is recorded and what was proposed
    ({"field": "lan", "problem": "is lan-a (recorded by the master; an administrator changes "
      "it); a node may not change it to lan-b", "recorded": "lan-a", "proposed": "lan-b"},
     "lan: is lan-a (recorded by the master; an administrator changes it); a node may not "
     "change it to lan-b"),
    ({"field": "capabilities", "problem": "is gpu (...)", "recorded": ["gpu"],
      "proposed": ["gpu", "ssd"]}, "capabilities: is gpu (...)"),
    # report_refused: the problem names the states requested and claimed
    ({"field": "state", "problem": "the instance is requested started, so a report may not "
      "claim destroyed", "requested": "started", "claimed": "destroyed"},
     "state: the instance is requested started, so a report may not claim destroyed"),
    # no_capacity from the placement pipeline: one plugin's refusals for one alternative
    ({"alternative": 0, "sla": "lan=mars", "plugin": "lan", "reason": "lan=mars", "count": 2},
     "[1] lan=mars: 2 computers refused by lan=mars (plugin lan)"),
    ({"alternative": 1, "sla": "", "plugin": "capacity", "reason": "no free partition",
      "count": 1, "sample": ["c1"]},
     "[2] anywhere: 1 computer refused by no free partition (plugin capacity), e.g. c1"),
    ({"alternative": 0, "sla": "lan=a", "plugin": "lan", "reason": "lan=a", "count": 3,
      "sample": ["c1", "c2"], "hint": "add one"},
     "[1] lan=a: 3 computers refused by lan=a (plugin lan), e.g. c1, c2 (hint=add one)"),
    # no_capacity for a shared instance: hosts refused per reason
    ({"reason": "lan=a", "count": 2}, "2 refused by lan=a"),
    # recursion_refused: the chain of masters
    ({"field": "provenance", "chain": ["a", "b"], "master": "c", "max_depth": 4,
      "problem": "loop"}, "provenance: a loop: a -> b -> c (limit 4)"),
    ({"field": "provenance", "chain": ["a"], "master": "b", "max_depth": 1,
      "problem": "too_deep"}, "provenance: too deep: a -> b (limit 1)"),
    # conflict of an unsupply: the instances still using the release
    ({"instance": "web-1"}, "instance web-1"),
    # instance_failed: log lines; node check: sentences
    ("buildout: Error: Couldn't install part", "buildout: Error: Couldn't install part"),
    # a bare problem
    ({"problem": "gone"}, "gone"),
    # {field, problem} with something more: the rest as key=value
    ({"field": "ttl", "problem": "1..86400", "given": 0}, "ttl: 1..86400 (given=0)"),
    # unknown shapes (e.g. a peer master's): key=value pairs, never a repr
    ({"code": "x", "limit": 3}, "code=x, limit=3"),
    ({"peers": ["b", "c"], "ok": False, "where": None, "at": {"lan": "a", "n": 1.5}},
     "peers=(b, c), ok=no, where=-, at=(lan=a, n=1.5)"),
    ({"chain": [], "depth": {"max": 2, "seen": ["a"]}}, "chain=-, depth=(max=2, seen=(a))"),
    ({}, "-"),
    (42, "42"),
    # terminal control characters are shown, not obeyed
    ("done\x1b[2J\rok", "done\\x1b[2J\\x0dok"),
    ({"field": "name", "problem": "bad\x07"}, "name: bad\\x07"),
]


@pytest.mark.parametrize("detail,line", LINES, ids=[str(i) for i in range(len(LINES))])
def test_every_detail_shape_reads_as_one_line(detail, line):
    assert problems.detail_line(detail) == line
    assert "{'" not in line and "['" not in line


# (message, details, lines under it): what repeats the message is left out.
REPEATS = [
    ("invalid request: reference is required (and 1 more)",
     [{"field": "reference", "problem": "is required"}, {"field": "state", "problem": "is required"}],
     ["  state: is required"]),
    ("invalid topology (2 problems in a.toml): a.toml:1: colour: unknown key",
     [{"field": "a.toml:1: colour", "problem": "unknown key"},
      {"field": "a.toml:2: size", "problem": "unknown key"}],
     ["  a.toml:2: size: unknown key"]),
    ("report on instance 'w' refused: only the node claims destroyed",
     [{"field": "state", "problem": "only the node claims destroyed", "requested": "destroyed",
       "claimed": "destroyed"}], []),
    ("invalid placement configuration: placement.sample must be 1..10000",
     [{"field": "placement.sample", "problem": "must be 1..10000"}], []),
    # the field is what the message lacks: kept
    ("the configuration says: must be 1..10000 (see the docs)",
     [{"field": "placement.sample", "problem": "must be 1..10000"}],
     ["  placement.sample: must be 1..10000"]),
    ("node in /n is not healthy: supervisord does not answer on /n/s.sock; the agent has not "
     "fetched its desired state yet",
     ["supervisord does not answer on /n/s.sock", "the agent has not fetched its desired state yet"],
     []),
    ("instance 'web' failed", ["failed", "Error: boom"], ["  failed", "  Error: boom"]),
    ("release r is used by 2 instance(s) on computer c (a-1, b); destroy them first",
     [{"instance": "a-1"}, {"instance": "b"}, {"instance": "a"}], ["  instance a"]),
    ("no host for shared instance s: ... fits (2 refused by lan=a)",
     [{"reason": "lan=a", "count": 2}, {"reason": "lan=b", "count": 1}], ["  1 refused by lan=b"]),
    ("no partition fits web: 1 computer refused by lan=mars",
     [{"alternative": 0, "sla": "lan=mars", "plugin": "lan", "reason": "lan=mars", "count": 1}],
     ["  [1] lan=mars: 1 computer refused by lan=mars (plugin lan)"]),
    ("master c refuses a request that already crossed it (a loop): a -> c -> c",
     [{"field": "provenance", "chain": ["a", "c"], "master": "c", "max_depth": 8,
       "problem": "loop"}], []),
    # a certificate refused at TLS (client side): the detail names the certificate file
    ("the master at https://m:1 does not trust this certificate: certificate expired",
     [{"field": "certificate", "problem": "/id/identity.crt: certificate expired"}],
     ["  certificate: /id/identity.crt: certificate expired"]),
    ("the request body is larger than the limit of 10 bytes",
     [{"field": "body", "problem": "larger than 10 bytes (limit: MAX_CONTENT_LENGTH)"}],
     ["  body: larger than 10 bytes (limit: MAX_CONTENT_LENGTH)"]),
    ("something failed", None, []),
]


@pytest.mark.parametrize("message,details,lines", REPEATS,
                         ids=[str(i) for i in range(len(REPEATS))])
def test_a_detail_the_message_already_says_is_left_out(message, details, lines):
    assert problems.error_lines(message, details) == [f"slapfed: error: {message}"] + lines


def test_many_details_are_cut_and_say_so():
    details = [{"field": f"f{i}", "problem": "is required"} for i in range(25)]
    lines = problems.problem_lines("invalid body", details)
    assert len(lines) == problems.MAX_DETAILS + 1
    assert lines[-1] == "  ... and 5 more (--json shows them all)"


def test_real_errors_render_without_reprs_or_repeats(tmp_path):
    """Errors built by the real code: the table's shapes are the ones raised."""
    with pytest.raises(RecursionRefused) as loop:
        provenance.extend(("a", "b"), "b")
    assert problems.error_lines(loop.value.message, loop.value.details) == [
        f"slapfed: error: {loop.value.message}"]

    bad = tmp_path / "t.toml"
    bad.write_text("colour = 1\nsize = 2\n")
    with pytest.raises(InvalidInput) as topo:
        topology_files.load([str(bad)])
    lines = problems.error_lines(topo.value.message, topo.value.details)
    assert len(topo.value.details) == 2 and len(lines) == 2
    assert lines[1].startswith(f"  {bad}:2: size: unknown key")

    refusal = claims.report_refusal("started", "destroyed", True)
    message = f"report on instance 'w' refused: {refusal.message}"
    assert problems.error_lines(message, refusal.details()) == [f"slapfed: error: {message}"]

    not_owned = claims.node_fact_problems(claims.ComputerFacts(lan="lan-a"), None,
                                          claims.ComputerFacts(lan="lan-b"))
    line = problems.detail_line(not_owned[0])
    assert line.startswith("lan: is 'lan-a' (recorded") and line.endswith("to 'lan-b'")


NOW = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("not_after,shown", [
    ("2026-01-01T00:00:00+00:00", "until 2026-01-01 00:00 UTC (in 365 days)"),
    ("2025-01-02T12:00:00+00:00", "until 2025-01-02 12:00 UTC (in 1 day)"),
    ("2025-01-01T03:00:00+00:00", "until 2025-01-01 03:00 UTC (in 3 hours)"),
    ("2024-12-29T00:00:00+00:00", "expired on 2024-12-29 00:00 UTC (3 days ago)"),
    ("2025-01-01T02:00:00+02:00", "until 2025-01-01 00:00 UTC (in 1 hour)"),
    (None, "-"), ("soon", "soon"),
])
def test_certificate_validity_reads_as_a_date_and_a_delay(not_after, shown):
    assert validity(not_after, NOW) == shown


def test_whoami_of_a_partition_names_its_computer_and_partition():
    body = {"principal": "partition/c1/p2", "development_mode": False,
            "identity": {"role": "partition", "name": "c1/p2", "uri": "slapfed://partition/c1/p2",
                         "computer": "c1", "partition": "p2"},
            "certificate": {"serial": "1f", "not_after": "2025-01-11T00:00:00+00:00",
                            "not_before": "2024-01-01T00:00:00+00:00", "fingerprint": "ab"}}
    assert render_whoami(body, "https://m:1", None, NOW).splitlines() == [
        "principal:   partition/c1/p2", "role:        partition", "name:        c1/p2",
        "computer:    c1", "partition:   p2",
        "certificate: serial 1f, valid until 2025-01-11 00:00 UTC (in 10 days)",
        "master:      https://m:1"]
