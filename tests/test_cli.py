"""The command line as a whole: every command loads, and every flag explains itself."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from edgeprune.cli import COMMANDS, cli


def _walk(command: click.Command, path: str):
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from _walk(command.get_command(ctx, name), f"{path} {name}")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_and_command_has_help(name: str) -> None:
    ctx = click.Context(cli)
    for path, command in _walk(cli.get_command(ctx, name), name):
        assert command.help, f"`edgeprune {path}` has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"`edgeprune {path}` option {param.opts} has no help text"
        result = CliRunner().invoke(cli, [*path.split(), "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_user_error_is_one_line_and_exit_code_2(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeprune", "run", "--schedule", str(tmp_path / "missing.yaml")],
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr
