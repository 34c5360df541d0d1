"""`make demo` from a checkout partition users cannot reach (a 0700 home or mktemp -d):
the demo says so and runs a single-user node instead of failing, while a real
`node format` keeps refusing (tests/test_node_isolation.py)."""
import os

import pytest

from slapfed.cli.demo_cmd import _isolation_flags

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs root")


def test_a_reachable_demo_directory_keeps_isolation(tmp_path):
    assert _isolation_flags(tmp_path) == []


def test_an_unreachable_demo_directory_gives_a_single_user_node(tmp_path, capsys):
    hidden = tmp_path / "home"
    hidden.mkdir(mode=0o700)
    demo = hidden / "demo"
    demo.mkdir()
    assert _isolation_flags(demo) == ["--single-user"]
    said = capsys.readouterr().out
    assert "single-user node" in said and "0700" in said
