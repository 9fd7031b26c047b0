"""Running a `tidings` command in the test's process, as the console script would."""

from __future__ import annotations

import pytest

from dispatcher.cli.main import main
from dispatcher.core.settings import Settings


def run(capsys: pytest.CaptureFixture[str], settings: Settings, *argv: str) -> tuple[int, str, str]:
    """``tidings ARGV…`` with ``settings``: its exit status, stdout and stderr."""
    code = main(list(argv), settings=settings)
    out, err = capsys.readouterr()
    return code, out, err
