"""docs/cli.md is every command's help, generated from the CLI; regenerate it after changing a command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from fitpipe.cli import app
from fitpipe.cli_doc import render

ROOT = Path(__file__).resolve().parents[1]


def command_paths(typer_app: typer.Typer, prefix: str = "fitpipe") -> list[str]:
    """Every command path of the app as registered, read from typer's own lists, not from click."""
    paths = [prefix]
    for command in typer_app.registered_commands:
        name = command.name or (command.callback.__name__.replace("_", "-") if command.callback else "")
        paths.append(f"{prefix} {name}")
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None
        paths += command_paths(group.typer_instance, f"{prefix} {group.name}")
    return paths


def test_cli_md_is_up_to_date():
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == render(), "docs/cli.md is stale: run `python -m fitpipe.cli_doc > docs/cli.md`"


def test_the_reference_has_a_section_for_every_command_and_sub_command():
    sections = [line[4:-1] for line in render().splitlines() if line.startswith("## `")]
    assert sorted(sections) == sorted(command_paths(app))
    assert len(sections) == len(set(sections))


@pytest.mark.slow
def test_every_section_holds_the_description_and_example_its_command_prints():
    reference = render()
    for path in command_paths(app):
        terminal = subprocess.run(
            [sys.executable, "-m", "fitpipe.cli", *path.split()[1:], "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
            cwd=ROOT,
        )
        assert terminal.returncode == 0, terminal.stderr
        section = reference.split(f"## `{path}`\n", 1)[1].split("\n## ", 1)[0]
        # Rich boxes and wraps differently; the words of the example are the same.
        example = " ".join(re.split(r"\n\s*\n", terminal.stdout.split("Example:", 1)[1], maxsplit=1)[0].split())
        assert example and example in " ".join(section.split()), (path, example)


def test_the_module_prints_the_reference_whatever_the_terminal():
    env = {"COLUMNS": "40", "TERMINAL_WIDTH": "50", "FORCE_COLOR": "1", "PATH": "/usr/bin:/bin"}
    printed = subprocess.run(
        [sys.executable, "-m", "fitpipe.cli_doc"], capture_output=True, text=True, check=True, env=env, cwd=ROOT
    ).stdout
    assert printed == render()
