"""The README tells the truth: its topology example validates, its commands exist."""
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from slapfed.cli.main import cli
from slapfed.topology import files

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_topology_example_is_a_valid_file():
    block = re.search(r"```toml\n(.*?)```", README, re.S).group(1)
    topology, problems = files.parse([("README.md", block)])
    assert problems == []
    assert set(topology.masters) == {"eu", "asia"}
    assert len(topology.links) == 1


COMMANDS = sorted({m.group(1) for m in re.finditer(r"`slapfed ([a-z][a-z ]*?)(?: [A-Z\[-]|`)",
                                                   README)})


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_the_readme_names_exists(command):
    words = [w for w in shlex.split(command) if re.fullmatch(r"[a-z-]+", w)]
    out = CliRunner().invoke(cli, words + ["--help"])
    assert out.exit_code == 0, f"`slapfed {command}`: {out.output}"
