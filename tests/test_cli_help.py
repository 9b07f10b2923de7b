"""The command tree and its help: every command is there, every help ends with an example that
parses, --version, and help that does not import the heavy libraries."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import click
import pytest
import typer
from typer.testing import CliRunner

from fitpipe import __version__
from fitpipe.cli import app
from support import ROOT


def command_tree() -> list[tuple[tuple[str, ...], click.Command]]:
    found = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        found.append((path, command))
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))

    walk(typer.main.get_command(app), ("fitpipe",))
    return found


COMMANDS = command_tree()


def test_command_tree_is_complete():
    paths = {" ".join(p) for p, _ in COMMANDS}
    for expected in (
        "fitpipe init-db",
        "fitpipe seed-users",
        "fitpipe ingest",
        "fitpipe backfill",
        "fitpipe status",
        "fitpipe aggregate",
        "fitpipe aggregate refresh",
    ):
        assert expected in paths


def parse_example(root: click.Command, example: str) -> None:
    """Parse (never run) each `fitpipe ...` command of an example line; bad flags raise."""
    for part in example.split("&&"):
        args = shlex.split(part)
        assert args[0] == "fitpipe", part
        args = args[1:]
        command = root
        while isinstance(command, click.Group) and args and args[0] in command.commands:
            command = command.commands[args.pop(0)]
        if isinstance(command, click.Group):
            assert not args, f"unknown subcommand in {part!r}"
            continue
        command.make_context(command.name, args)


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_ending_with_an_example(path, command):
    text = (command.help or "").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert len(lines) >= 2, f"{' '.join(path)} has no help text besides an example: {text!r}"
    assert not lines[0].startswith("Example"), lines[0]
    last = lines[-1]
    assert last.startswith("Example: fitpipe"), f"{' '.join(path)}: last help line is {last!r}"
    example = last.removeprefix("Example:").strip()
    if len(path) > 1:
        assert example.startswith(" ".join(path)), f"example of {' '.join(path)} shows another command: {example}"
    parse_example(typer.main.get_command(app), example)
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{' '.join(path)} option {param.opts} has no help"

    # And the rendered --help shows it.
    proc_args = [*path[1:], "--help"]
    result = CliRunner().invoke(app, proc_args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert re.search(r"Example:\s+fitpipe", result.output), result.output


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"fitpipe {__version__}"
    proc = subprocess.run([sys.executable, "-m", "fitpipe.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"fitpipe {__version__}"


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys\n"
        "from fitpipe.cli import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('HEAVY=' + ','.join(m for m in ('wearipedia', 'pandas', 'numpy') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout  # help really ran
    marker = [line for line in proc.stdout.splitlines() if line.startswith("HEAVY=")]
    assert marker == ["HEAVY="], f"fitpipe --help imported: {marker}"
