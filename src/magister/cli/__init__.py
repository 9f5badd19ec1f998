"""The `magister` command line (`magister.cli:app`): each command parses its options and calls the library.

The app is built in `main.py`; the commands live one module per group (see there).
"""

from magister.cli.main import app

__all__ = ["app"]
