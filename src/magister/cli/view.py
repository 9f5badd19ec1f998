"""The local web app: view."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from magister.cli.common import fail, guard, out


@guard
def view(port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
         host: Annotated[str, typer.Option(help="Address to bind. Anything but 127.0.0.1/localhost needs the token "
                                           "printed at start on every request.")] = "127.0.0.1",
         who: Annotated[str, typer.Option(help="Name stored with the labels you give.")] = os.environ.get(
             "USER", "me") or "me",
         battles: Annotated[Optional[list[Path]], typer.Option(
             help="Battles JSONL to show as a Bradley-Terry leaderboard (repeatable).")] = None) -> None:
    """A local web app over the store: runs, items, comparisons, leaderboards, teaching runs, human labels."""
    try:
        from magister.web.app import serve
    except ImportError:
        raise fail("magister view needs FastAPI and uvicorn: pip install 'magister[web]'") from None
    files = {}
    for path in battles or []:
        if not path.is_file():
            raise fail(f"{path}: no such battles file")
        files[path.stem] = path
    serve(host=host, port=port, who=who, battles=files, echo=out.print)

