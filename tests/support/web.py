"""The web process as the Procfile starts it (its ``web:`` line, through a shell), and an HTTP client for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import httpx

from .wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


def procfile_line(name: str) -> str:
    """The command of one Procfile line."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise AssertionError(f"the Procfile has no {name}: line")


class WebServer:
    """``uvicorn --factory dispatcher.api.app:create_app`` on the env's TIDINGS_HTTP_PORT; ``command`` and
    ``cwd`` start another process serving the app instead (``tidings dev``)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        command: list[str] | None = None,
        cwd: Path = ROOT,
        url: str | None = None,
    ) -> None:
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
        self.log_path = log_path
        self.command = command or ["bash", "-c", f"exec {procfile_line('web')}"]
        self.cwd = cwd
        self.url = url or f"http://127.0.0.1:{env['TIDINGS_HTTP_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30.0) -> WebServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, timeout=timeout, interval=0.05, what=f"{self.command[0]} to answer /healthz")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.command[0]} exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def client(self, token: str | None = None, **options: object) -> httpx.Client:
        """An httpx client for this server, sending ``token`` as a bearer token if given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **options)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C or a process manager would; SIGKILL if it has not stopped within 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole process group: no shutdown at all."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def __enter__(self) -> WebServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
