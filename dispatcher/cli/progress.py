"""How far a long command is: a bar on a terminal, an occasional plain line otherwise.

The code below the CLI (commands, ops, rankings, storage) knows nothing of terminals: it takes a
callback ``progress(done, total)`` and calls it as it goes. A :class:`Reporter` is such a
callback. On a terminal (stderr) it draws a bar that disappears at the end; on a pipe or a file it
writes a plain line at most every ``interval`` seconds, never a carriage return or an escape code,
so a log shows that a long run is alive. Either way the command prints its own summary line.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

T = TypeVar("T")

#: Off a terminal, at most one line per this many seconds.
PLAIN_INTERVAL = 10.0


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal that can draw a bar (not a pipe, a file or TERM=dumb)."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Reporter:
    """A progress callback for one operation: ``with Reporter("replaying", total=n) as progress: progress(3)``."""

    def __init__(
        self,
        what: str,
        *,
        total: int | None = None,
        stream: TextIO | None = None,
        interval: float = PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._clock = clock
        self._last_line = clock()
        self._bar: Progress | None = None
        self._task = TaskID(0)

    def __enter__(self) -> Reporter:
        if is_terminal(self.stream):
            console = Console(file=self.stream, force_terminal=True)
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                # print() goes above the bar only when stdout is that terminal too: never into stderr
                redirect_stdout=is_terminal(sys.stdout),
                redirect_stderr=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total)
        return self

    def __call__(self, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` are done (``total`` None: as before, or unknown)."""
        self.done = done
        if total is not None:
            self.total = total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total)
        elif self._clock() - self._last_line >= self.interval:
            self._last_line = self._clock()
            self.stream.write(f"{self.what}: {done}" + (f" of {self.total}" if self.total is not None else "") + "\n")
            self.stream.flush()

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """``items`` one by one, counting each done once the caller asks for the next."""
        count = 0
        for item in items:
            yield item
            count += 1
            self(count)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
