"""Tidings processes run the way operators run them: the stock dramatiq CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``dramatiq dispatcher.worker schedules`` in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, *, processes: int = 1, threads: int = 4) -> None:
        self.env = env
        self.log_path = log_path
        self.processes = processes
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self, *, timeout: float = 30.0) -> WorkerProcess:
        self.start_async()
        return self.wait_ready(timeout=timeout)

    def start_async(self) -> None:
        """Start the processes without waiting for them to be ready."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [
            sys.executable,
            "-m",
            "dramatiq",
            "dispatcher.worker",
            "schedules",
            "--processes",
            str(self.processes),
            "--threads",
            str(self.threads),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, *, timeout: float = 30.0) -> WorkerProcess:
        wait_for(self._ready, timeout=timeout, interval=0.1, what="the worker to report ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.log()}")
        return self.log().count("Worker process is ready for action") >= self.processes

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole group: the main process and its worker processes, no goodbyes."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM to the main process, as an operator would; SIGKILL if it does not stop in 30 s."""
        self._signal(signal.SIGTERM, timeout=30, group=False)

    def _signal(self, sig: signal.Signals, timeout: float = 10, group: bool = True) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
