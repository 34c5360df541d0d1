"""A node whose supervisord someone else runs (profiles/node): node.json keeps the mode,
the agent waits for that supervisord instead of starting one, and its config says so."""
import pytest

from slapfed.core.errors import InvalidInput
from slapfed.node.layout import Paths, format_node, load_config
from slapfed.node.supervisor import EXTERNAL, OWN, Supervisor, SupervisorError, render_main_conf


@pytest.mark.parametrize("foreground, line", [(False, "nodaemon = false"),
                                              (True, "nodaemon = true")],
                         ids=["own", "external"])
def test_main_conf_runs_in_the_foreground_only_for_an_external_supervisord(tmp_path, foreground,
                                                                           line):
    assert line in render_main_conf(Paths(str(tmp_path)), "x", foreground=foreground)


@pytest.mark.parametrize("first, again, kept", [
    (None, None, OWN),
    (EXTERNAL, None, EXTERNAL),
    (EXTERNAL, OWN, OWN),
], ids=["default-own", "kept-on-reformat", "changed-when-asked"])
def test_format_records_the_supervisord_mode(tmp_path, first, again, kept):
    format_node(str(tmp_path), "http://m", "c1", 1, supervisord=first)
    format_node(str(tmp_path), "http://m", "c1", 2, supervisord=again)
    assert load_config(str(tmp_path)).supervisord == kept


def test_format_refuses_an_unknown_supervisord_mode(tmp_path):
    with pytest.raises(InvalidInput):
        format_node(str(tmp_path), "http://m", "c1", 1, supervisord="theirs")


def test_an_external_supervisord_is_awaited_never_started(tmp_path):
    sup = Supervisor(Paths(str(tmp_path)), mode=EXTERNAL)
    with pytest.raises(SupervisorError, match="slapfed node supervisord"):
        sup.ensure_running(timeout=0.2)
    assert not (tmp_path / "etc" / "supervisord.conf").exists()
    assert sup.foreground_argv()[-3:] == ["-n", "-c", sup.paths.supervisord_conf]


def test_check_names_every_missing_piece_and_exits_8(tmp_path):
    from click.testing import CliRunner

    from slapfed.cli.common import Exit
    from slapfed.cli.main import cli

    unformatted = CliRunner().invoke(cli, ["node", "check", "--root", str(tmp_path / "none")])
    assert unformatted.exit_code == Exit.FAILED and "not formatted" in unformatted.output
    format_node(str(tmp_path), "http://127.0.0.1:9", "c1", 1, supervisord=EXTERNAL)
    down = CliRunner().invoke(cli, ["node", "check", "--root", str(tmp_path)])
    assert down.exit_code == Exit.FAILED
    for piece in ("supervisord does not answer", "no node agent runs",
                  "the master does not show computer c1"):
        assert piece in down.output
