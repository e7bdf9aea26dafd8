"""`python -m tickwatch` runs the CLI."""

from tickwatch.cli import app

app()
