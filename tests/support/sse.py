"""An SSE client for the web process's live stream, reading in a thread of its own as a browser's EventSource does."""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from typing import Any

import httpx

from dispatcher.api.auth import mint_user_token

from .deployment import USER_TOKEN_SECRET
from .web import WebServer

STREAM = "/v1/me/notifications/stream"


def user_token(user_id: str) -> str:
    """A user token the deployment's web process accepts."""
    return mint_user_token(USER_TOKEN_SECRET, user_id, ttl=600)


@dataclasses.dataclass
class Event:
    """One SSE event (``comment`` for a comment line), with when it was read (time.monotonic())."""

    event: str
    id: str | None
    data: str
    received_at: float

    def json(self) -> Any:
        return json.loads(self.data)


class EventSource:
    """Reads ``user_id``'s stream (token in the query, as EventSource sends it) until closed."""

    def __init__(self, web: WebServer, user_id: str, *, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[Event | BaseException] = queue.Queue()
        self.client = httpx.Client(base_url=web.url, timeout=httpx.Timeout(10, read=None))
        request = self.client.build_request("GET", STREAM, params={"token": user_token(user_id)}, headers=headers)
        self.response = self.client.send(request, stream=True)
        assert self.response.status_code == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines():
                now = time.monotonic()
                if line == "":
                    if "event" in fields:
                        self.events.put(Event(fields["event"], fields.get("id"), fields.get("data", ""), now))
                    fields = {}
                elif line.startswith(":"):
                    self.events.put(Event("comment", None, line[1:].strip(), now))
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except BaseException as e:  # closed by the caller, or the server went away
            self.events.put(e)

    def next(self, event: str = "notification", *, timeout: float = 5.0) -> Event:
        """The next event of that kind (others are skipped), within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {event} event within {timeout} s") from None
            if isinstance(item, BaseException):
                raise AssertionError(f"the stream ended: {item!r}")
            if item.event == event:
                return item

    def received(self) -> list[Event]:
        """The events read so far and not taken yet."""
        items: list[Event] = []
        while True:
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return items
            if isinstance(item, Event):
                items.append(item)

    def close(self) -> None:
        self.response.close()
        self.client.close()
        self.thread.join(5)
