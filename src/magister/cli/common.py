"""What every command shares: the consoles, the common options, errors, Ctrl-C, and closing what it opened."""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from magister.errors import MagisterError

if TYPE_CHECKING:
    from magister.store import Store

out = Console()
err = Console(stderr=True, soft_wrap=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec BACKEND:NAME (see `magister models`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]

F = TypeVar("F", bound=Callable[..., Any])


def print_json(data: object) -> None:
    """Print strict JSON: NaN and infinities (which json.dumps writes as bare NaN) become null."""
    from magister.jsonl import finite

    print(json.dumps(finite(data), default=str, allow_nan=False))


def shown_text(text: object) -> Text:
    """Model output or file content, safe for the terminal: control characters (ESC, BEL, backspace, ...)
    shown as visible escapes (`\\x1b`) instead of being obeyed, and no rich markup read from it."""
    value = "" if text is None else str(text)
    return Text("".join(ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else f"\\x{ord(ch):02x}"
                        for ch in value))


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error line and return the exit to raise: `raise fail("...")`."""
    from rich.markup import escape

    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)  # "pip install 'magister[ray]'" as written
    return typer.Exit(code)


def guard(fn: F) -> F:
    """Print Magister's own errors as one line, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MagisterError as error:
            raise fail(str(error)) from None
        except sqlite3.OperationalError as error:  # a full disk, a lock held too long
            raise fail(f"the store could not be written or read ({error}): free some disk space, or wait for "
                       "the other process, and run the same command again (finished work is kept)") from None
        except sqlite3.DatabaseError as error:  # a damaged page found by a query, after the store opened
            from magister.store import user_dir

            path = os.environ.get("MAGISTER_STORE") or user_dir() / "magister.db"
            raise fail(f"the store is damaged ({error}): copy what can be saved with `sqlite3 "
                       f"{path} .recover | sqlite3 recovered.db`, then move the damaged "
                       "file aside; Magister starts a new one") from None
        except Exception as error:  # a PostgreSQL store's error in a query (psycopg is imported only for one)
            if not type(error).__module__.startswith("psycopg"):
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise fail(f"the PostgreSQL store failed: {first} (finished work is kept: run the same command "
                       "again once the server answers)") from None
    return wrapper  # type: ignore[return-value]


HARD_EXIT = False  # the console script sets it: after "Interrupted", exit at once, not after threads finish
_signals = 0


def _on_signal(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM alike: the first unwinds as a KeyboardInterrupt (finished work is saved, leases
    released, the run marked interrupted); a second one while that happens exits at once, still 130."""
    global _signals
    _signals += 1
    if _signals > 1:
        os._exit(130)
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """Ctrl-C and SIGTERM stop a command the same way (the console script calls this)."""
    global HARD_EXIT
    HARD_EXIT = True
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


@contextmanager
def interruptible(then: str) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) prints 'Interrupted: THEN' (what is saved, how to go on) and exits 130, without a
    traceback and without waiting for requests still in flight: what finished is already in the store."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"\nInterrupted: {then}")
        if HARD_EXIT:  # worker threads blocked on a slow server would otherwise hold the exit for a minute
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise typer.Exit(130) from None


@contextmanager
def closing(*things: Any) -> Iterator[None]:
    """Close each of THINGS (models, stores; None is skipped) on the way out, in the order given."""
    try:
        yield
    finally:
        for thing in things:
            if thing is not None:
                thing.close()


@contextmanager
def open_store() -> Iterator[Store]:
    """The user's store, closed on the way out: $MAGISTER_STORE (a SQLite file, or a postgresql:// URL for a
    team), else magister.db in the user directory. That directory is made either way: commands write files
    there (the labels `judge-check --run` reads)."""
    from magister.store import Store, user_dir

    if not user_dir().exists():
        user_dir().mkdir(parents=True)
    store = Store()
    with closing(store):
        yield store
