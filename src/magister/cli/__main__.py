"""`python -m magister.cli`."""

from magister.cli.main import run

run()
