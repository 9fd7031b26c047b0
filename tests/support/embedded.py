"""``tidings dev`` as a user runs it: a process of its own in a directory of its own, with RabbitMQ unreachable."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from dispatcher.api.auth import mint_user_token
from dispatcher.core.events import format_time

from .services import free_port
from .web import WebServer

#: Where nothing listens: the embedded mode must not need RabbitMQ.
CLOSED_BROKER_URL = "amqp://guest:guest@127.0.0.1:9/%2F"


def tidings_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without any TIDINGS_* setting of the test run's, RabbitMQ pointed at a closed port."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TIDINGS_")}
    env["TIDINGS_BROKER_URL"] = CLOSED_BROKER_URL
    return {**env, **(extra or {})}


class DevProcess(WebServer):
    """``tidings dev`` in ``directory`` on a free port; ``command`` is how to run it (default: this venv's)."""

    def __init__(
        self,
        directory: Path,
        *,
        args: Sequence[str] = (),
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        port = free_port()
        run = list(command or [str(Path(sys.executable).parent / "tidings"), "dev"])
        super().__init__(
            tidings_env(env),
            directory / "dev.log",
            command=[*run, *args, "--port", str(port)],
            cwd=directory,
            url=f"http://127.0.0.1:{port}",
        )

    def start(self, *, timeout: float = 60.0) -> DevProcess:
        super().start(timeout=timeout)
        return self

    @property
    def secrets(self) -> dict[str, str]:
        stored: dict[str, str] = json.loads((self.directory / ".tidings" / "secrets.json").read_text())
        return stored

    def client(self, token: str | None = None, **options: object) -> httpx.Client:
        """A client sending ``token``, by default the API key the embedded mode made."""
        return super().client(token or self.secrets["api_key"], **options)

    def user_client(self, user: str) -> httpx.Client:
        return self.client(mint_user_token(self.secrets["user_token_secret"], user, ttl=600))

    def publish(self, client: httpx.Client, type_name: str, data: dict[str, Any], *, id: str) -> httpx.Response:
        """POST /v1/events with a CloudEvent of ``type_name``."""
        event = {
            "specversion": "1.0",
            "id": id,
            "source": "/tests/embedded",
            "type": type_name,
            "time": format_time(dt.datetime.now(dt.UTC)),
            "data": data,
        }
        return client.post("/v1/events", json=event, headers={"Content-Type": "application/cloudevents+json"})

    def emails(self) -> list[Path]:
        outbox = self.directory / "outbox"
        return sorted(outbox.glob("*.eml")) if outbox.is_dir() else []
