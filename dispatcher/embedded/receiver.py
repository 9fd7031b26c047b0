"""The embedded mode's webhook receiver: it keeps every signed request it gets, and whether its signature holds.

An endpoint registered with the URL ``http://127.0.0.1:<port>/dev/webhooks/in/<label>`` sends its
requests to the web process itself; each is kept as ``<directory>/<time>-<n>.json`` (written whole,
then renamed) and shown at /dev/webhooks. The signature is checked as a receiver would: against the
secrets of the endpoints registered with this receiver's URL, over ``id.timestamp.body``, compared in constant time.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import itertools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dispatcher.commands.endpoints import secret_key
from dispatcher.storage.models import WebhookEndpoint

#: The headers kept with each request (the body is kept whole).
KEPT_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent")
NAME = re.compile(r"^[0-9]{8}T[0-9]{6}\.[0-9]{6}-[0-9]+\.json$")
LABEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    name: str
    label: str
    received_at: str
    headers: dict[str, str]
    body: str
    verified_by: str | None  # the endpoint whose secret signed it, or None

    def pretty_body(self) -> str:
        try:
            return json.dumps(json.loads(self.body), indent=2, ensure_ascii=False)
        except ValueError:
            return self.body


#: The path of the receiver; a label follows it.
PATH = "/dev/webhooks/in/"


def signed_by(label: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """The id of the endpoint registered with this receiver's URL for ``label`` (any host and port) whose
    secret, or previous secret, signed this request."""
    msg_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    given = [
        part.removeprefix("v1,") for part in headers.get("webhook-signature", "").split() if part.startswith("v1,")
    ]
    if not msg_id or not timestamp or not given:
        return None
    signed = f"{msg_id}.{timestamp}.".encode() + body
    for endpoint in WebhookEndpoint.select().where(WebhookEndpoint.url.endswith(PATH + label)):
        for secret in filter(None, (endpoint.secret, endpoint.previous_secret)):
            expected = base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()
            if any(hmac.compare_digest(expected, signature) for signature in given):
                return str(endpoint.id)
    return None


class Receiver:
    """Keeps requests in ``directory``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._numbers = itertools.count(1)

    def keep(self, label: str, headers: Mapping[str, str], body: bytes) -> Received:
        now = dt.datetime.now(dt.UTC)
        received = Received(
            name=f"{now.strftime('%Y%m%dT%H%M%S.%f')}-{next(self._numbers)}.json",
            label=label,
            received_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            headers={name: headers[name] for name in KEPT_HEADERS if name in headers},
            body=body.decode("utf-8", "replace"),
            verified_by=signed_by(label, headers, body),
        )
        path = self.directory / received.name
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(dataclasses.asdict(received), ensure_ascii=False))
        os.replace(temporary, path)
        return received

    def read(self, *, limit: int = 200) -> list[Received]:
        """The newest ``limit`` requests, newest first."""
        names = sorted((p.name for p in self.directory.iterdir() if NAME.match(p.name)), key=_order, reverse=True)
        kept = []
        for name in names[:limit]:
            try:
                value: dict[str, Any] = json.loads((self.directory / name).read_text())
            except (OSError, ValueError):
                continue
            kept.append(Received(**value))
        return kept


def _order(name: str) -> tuple[str, int]:
    stamp, _, number = name.removesuffix(".json").partition("-")
    return stamp, int(number)
