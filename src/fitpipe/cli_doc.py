"""The CLI reference (docs/cli.md), rendered from the commands' own help.

    python -m fitpipe.cli_doc > docs/cli.md

Every command and sub-command of `fitpipe`, in the order `fitpipe --help` lists them, with the
help click prints for it. Plain click formatting at a fixed width rather than typer's rich panels,
so the text is the same on any terminal, in CI and with or without colour; tests/test_cli_reference.py
fails when docs/cli.md differs from it.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import typer

# Wide enough for most option descriptions on one line, narrow enough to read in a browser.
WIDTH = 100

HEADER = """\
# fitpipe command reference

Every command's `--help`, generated from the commands themselves by
`python -m fitpipe.cli_doc > docs/cli.md`; `tests/test_cli_reference.py` fails when this file is
stale. The [README](../README.md#commands) has the commands in one table.
"""


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    context = click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH)
    # typer's options look for their markup settings in ctx.obj; the callback that fills it never runs here.
    context.ensure_object(dict)
    return context


def _help_text(command: click.Command, context: click.Context) -> str:
    formatter = context.make_formatter()
    # click's own formatting, not typer's rich panels (whose layout follows the terminal).
    click.Command.format_help(command, context, formatter)
    return formatter.getvalue().rstrip() + "\n"


def _walk(
    command: click.Command, name: str, parent: click.Context | None = None
) -> Iterator[tuple[click.Context, click.Command]]:
    context = _context(command, name, parent)
    yield context, command
    if isinstance(command, click.Group):
        for child_name in command.list_commands(context):
            child = command.get_command(context, child_name)
            if child is not None and not child.hidden:
                yield from _walk(child, child_name, context)


def render(app: typer.Typer | None = None) -> str:
    """The whole reference as Markdown: one section per command, its help in a text block."""
    if app is None:
        from fitpipe.cli import app as fitpipe_app

        app = fitpipe_app
    sections = [HEADER]
    for context, command in _walk(typer.main.get_command(app), "fitpipe"):
        sections.append(f"## `{context.command_path}`\n\n```text\n{_help_text(command, context)}```\n")
    return "\n".join(sections)


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
