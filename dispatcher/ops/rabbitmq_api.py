"""Messages unacknowledged per queue, from RabbitMQ's management HTTP API (TIDINGS_RABBITMQ_API_URL).

AMQP's passive declarations (ops/observations.py) count ready messages and consumers, not the messages a
consumer holds unacknowledged: those only the management plugin reports. One GET of
``/api/queues/<vhost>``, filtered by the server to Tidings' queues, bounded in time and size. Its figures
are the plugin's statistics, refreshed every ``collect_statistics_interval`` (5 s by default).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterable

import pika
import requests

from channels.http import root_cause
from dispatcher.core.errors import TidingsError
from dispatcher.core.settings import Settings, redact_url

#: An answer for a few dozen queues is a few kilobytes; anything past this is not the API we asked.
MAX_RESPONSE_BYTES = 1024 * 1024
#: At most this many queues in one page (RabbitMQ's own maximum page size is 500).
PAGE_SIZE = 500


class RabbitMQApiError(TidingsError):
    """The management API could not be read: refused, timed out, an HTTP error, or not the answer expected."""


def api_credentials(settings: Settings) -> tuple[str, str]:
    """The API URL's user and password, else the broker URL's (guest/guest when it names none, as pika does)."""
    for url in (settings.rabbitmq_api_url or "", settings.broker_url):
        parts = urllib.parse.urlsplit(url)
        if parts.username:
            return urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
    return "guest", "guest"


def unacknowledged(settings: Settings, names: Iterable[str], *, timeout: float) -> dict[str, int | None]:
    """Each of ``names`` that the API lists -> its messages unacknowledged (None: no statistics yet)."""
    if not settings.rabbitmq_api_url:
        raise RabbitMQApiError("TIDINGS_RABBITMQ_API_URL is not set")
    wanted = set(names)
    parts = urllib.parse.urlsplit(settings.rabbitmq_api_url)
    netloc = parts.netloc.rpartition("@")[2]  # the credentials go in the Authorization header, not the URL
    vhost = urllib.parse.quote(pika.URLParameters(settings.broker_url).virtual_host, safe="")
    url = urllib.parse.urlunsplit((parts.scheme, netloc, f"{parts.path.rstrip('/')}/api/queues/{vhost}", "", ""))
    where = redact_url(settings.rabbitmq_api_url)
    pattern = "^(" + "|".join(re.escape(name) for name in sorted(wanted)) + ")$"
    params = {
        "page": "1",
        "page_size": str(PAGE_SIZE),
        "name": pattern,
        "use_regex": "true",
        "columns": "name,messages_unacknowledged",
    }
    deadline = time.monotonic() + timeout
    session = requests.Session()
    session.trust_env = False  # no proxy, .netrc or CA bundle from the environment: the password goes to this URL only
    try:
        with session.get(
            url,
            params=params,
            auth=api_credentials(settings),
            timeout=timeout,
            stream=True,
            allow_redirects=False,
            verify=True,
        ) as response:
            if response.status_code != 200:
                raise RabbitMQApiError(f"{where} answered {response.status_code} {response.reason}{_hint(response)}")
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise RabbitMQApiError(f"{where} answered more than {MAX_RESPONSE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise RabbitMQApiError(f"{where} did not answer within {timeout:g} s")
    except requests.RequestException as e:
        cause = root_cause(e)
        raise RabbitMQApiError(f"{where}: {type(cause).__name__}: {cause}") from None
    finally:
        session.close()
    return _counts(bytes(body), wanted, where)


def _hint(response: requests.Response) -> str:
    if response.status_code == 401:
        return " (the user needs the 'monitoring' tag: rabbitmqctl set_user_tags USER monitoring)"
    if response.status_code == 404:
        return " (is the URL the management plugin's, and the broker URL's vhost there?)"
    return ""


def _counts(body: bytes, wanted: set[str], where: str) -> dict[str, int | None]:
    try:
        document = json.loads(body)
        # paginated, as asked; a proxy or an old plugin that ignores the page parameters answers a list
        items = document["items"] if isinstance(document, dict) else document
        counts: dict[str, int | None] = {}
        for item in items:
            if item["name"] in wanted:
                value = item.get("messages_unacknowledged")
                counts[item["name"]] = value if isinstance(value, int) else None
    except (ValueError, KeyError, TypeError) as e:
        raise RabbitMQApiError(f"{where} did not answer a list of queues ({type(e).__name__}: {e})") from None
    return counts
