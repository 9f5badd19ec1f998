"""One progress bar style for long work: description, bar, done/total, a rate field, elapsed time."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(console: Console, enabled: bool = True) -> Progress:
    """A rich Progress whose tasks carry a `rate` field (add_task(..., rate=""))."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    return Progress(*columns, console=console, disable=not enabled, transient=False)
