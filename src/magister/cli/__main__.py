"""`python -m magister.cli`."""

from magister.cli import app

app()
