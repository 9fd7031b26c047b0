"""The `tidings` command: one module per command group; main.py parses and dispatches."""

from dispatcher.cli.main import main

__all__ = ["main"]
