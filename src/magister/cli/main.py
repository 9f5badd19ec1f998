"""The `magister` app: the version flag, and every command registered from its group's module.

    exam.py    exam, demo, runs, show, models      sitting exams and reading the results
    rank.py    compare, leaderboard, anchors, difficulty   across runs and models
    judge.py   judge-check, calibrate, labels, battles     judges against people
    teach.py   write, teach                        the teacher at work
    view.py    view                                the local web app
    common.py  what they share: consoles, options, errors, Ctrl-C, closing what was opened

Each command imports what it needs when it runs, so `magister --help` stays quick.
"""

from __future__ import annotations

from typing import Annotated

import typer

from magister.cli import common, exam, judge, rank, teach, view

app = typer.Typer(help="Teach small language models from big ones, and prove the result with exams.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"magister {version('magister')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Teach small language models from big ones, and prove the result with exams."""


# in the order `magister --help` lists them
app.command()(exam.exam)
app.command()(exam.demo)
app.command()(exam.runs)
app.command()(exam.show)
app.command()(rank.compare)
app.command()(rank.leaderboard)
app.command()(rank.anchors)
app.command("judge-check")(judge.judge_check)
app.command()(judge.calibrate)
app.command()(judge.labels)
app.command()(judge.battles)
app.command()(teach.write)
app.command(cls=teach.TeachCommand)(teach.teach)
app.command()(rank.difficulty)
app.command()(exam.models)
app.command()(view.view)


def run() -> None:
    """The `magister` console script: the app, with Ctrl-C and SIGTERM handled alike."""
    common.install_signal_handlers()
    app()
