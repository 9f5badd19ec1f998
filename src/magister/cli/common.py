"""What every command shares: the consoles, the common options, errors, Ctrl-C, and closing what it opened."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Callable, TypeVar

import typer
from rich.console import Console

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


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error line and return the exit to raise: `raise fail("...")`."""
    err.print(f"[bold red]Error:[/] {message}", highlight=False)
    return typer.Exit(code)


def guard(fn: F) -> F:
    """Print Magister's own errors as one line, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MagisterError as error:
            raise fail(str(error)) from None
    return wrapper  # type: ignore[return-value]


@contextmanager
def interruptible(then: str) -> Iterator[None]:
    """Ctrl-C prints 'Interrupted: THEN' (what is saved, how to go on) and exits 130, without a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"\nInterrupted: {then}")
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
    """The user's store, closed on the way out."""
    from magister.store import Store

    store = Store()
    with closing(store):
        yield store
