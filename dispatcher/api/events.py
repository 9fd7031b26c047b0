"""POST /v1/events: a CloudEvent from a service that does not speak AMQP, checked as ingest checks it, then published.

The body goes through the worker's own intake and admission (amqp/intake.py, pipeline/admission.py)
with the envelope it will be published with, so a refusal here gives the reason the bus would give.
It is published to the exchange as Tidings' own RabbitMQ user, the only one the web process has,
which may do everything; so it carries the key's authority instead, in the header the intake
honours from Tidings' user alone (ORIGINAL_PUBLISHER_HEADER): Tidings' own user for a key with the
``commands`` scope, ``api:<key name>`` for any other (a catalog type's ``publishers`` may name it).
The worker then checks the event again, with that authority.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from dispatcher.amqp.intake import CONTENT_TYPE, ORIGINAL_PUBLISHER_HEADER, Envelope, Intake
from dispatcher.amqp.publisher import PublishError
from dispatcher.core.api_keys import ApiKey
from dispatcher.core.authority import Authority
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidEvent, Unauthorized
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import Settings
from dispatcher.pipeline.admission import admit

from .auth import api_key
from .problems import ApiError, problem_response
from .state import api_state

router = APIRouter(tags=["events"])
log = structlog.get_logger("tidings.api")

EventsKey = Annotated[ApiKey, Depends(api_key("events"))]
#: The scope that gives a key Tidings' own authority on the bus.
COMMANDS_SCOPE = "commands"
#: Structured mode: the body is the whole event (CloudEvents HTTP binding).
STRUCTURED_TYPES = (CONTENT_TYPE, "application/json")
#: Binary mode: the attributes come as ce-* headers and the body is the data.
BINARY_PREFIX = "ce-"
RETRY_AFTER = "5"


class EventAccepted(BaseModel):
    """The event RabbitMQ confirmed; Tidings processes it once per (source, id)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    source: str


def publisher_name(key: ApiKey, settings: Settings) -> str:
    """Whose authority an event from ``key`` carries on the bus: Tidings' own with ``commands``, else the key's."""
    return settings.broker_user if COMMANDS_SCOPE in key.scopes else f"api:{key.name}"


async def raw_body(request: Request) -> bytes:
    """The request's body (a dependency, so that the handler itself may be sync)."""
    return await request.body()


def structured_body(headers: Mapping[str, str], body: bytes) -> bytes:
    """The event as structured-mode JSON bytes, from either HTTP mode; 415 for other media types."""
    if BINARY_PREFIX + "specversion" in headers:
        return binary_to_structured(headers.items(), headers.get("content-type"), body)
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in STRUCTURED_TYPES:
        raise ApiError(
            415,
            "Unsupported Media Type",
            f"send a CloudEvent as {' or '.join(STRUCTURED_TYPES)} (structured mode), "
            "or its attributes as ce-* headers and its data as the body (binary mode)",
        )
    return body


def binary_to_structured(headers: Iterable[tuple[str, str]], content_type: str | None, body: bytes) -> bytes:
    """A binary-mode request (ce-* headers, the data as the body) as the structured-mode event it stands for.

    Data that is not JSON is refused in the intake's words (InvalidEvent): the bus carries JSON only.
    """
    event: dict[str, Any] = {}
    for name, value in headers:
        if name.lower().startswith(BINARY_PREFIX) and len(name) > len(BINARY_PREFIX):
            event[name.lower().removeprefix(BINARY_PREFIX)] = urllib.parse.unquote(value)  # percent-encoded
    if content_type is not None:
        event["datacontenttype"] = content_type
    if body:
        try:
            event["data"] = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidEvent("the body is not UTF-8") from None
        except (ValueError, RecursionError) as e:
            raise InvalidEvent(f"the body is not JSON ({str(e)[:200]})") from None
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def check_event(body: bytes, publisher: str, settings: Settings, catalog: Catalog) -> CloudEvent:
    """The event in ``body``, checked exactly as the worker will check it; InvalidEvent (or Unauthorized) if not."""
    intake = Intake(ingest_queue=settings.queue("ingest"), max_event_bytes=settings.max_event_bytes)
    message = intake.wrap(body)
    kwargs = message["kwargs"]
    if "error" in kwargs:
        raise InvalidEvent(kwargs["error"])
    event = kwargs["event"]
    routing_key = event.get("type") if isinstance(event.get("type"), str) else None
    envelope = Envelope(routing_key=routing_key, content_type=CONTENT_TYPE, publisher=publisher)
    authority = Authority(settings.authorised_users)
    checked, _ = admit(event, envelope, catalog=catalog, settings=settings, authority=authority)
    return checked


def _refusal(status: int, title: str, reason: str) -> JSONResponse:
    return problem_response(status, title, reason, errors=[{"field": "body", "in": "body", "message": reason}])


PROBLEM: dict[str, Any] = {"application/problem+json": {}}


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventAccepted,
    summary="Publish a CloudEvent",
    description=(
        "A CloudEvents 1.0 event in structured mode (the JSON body, `application/cloudevents+json` or "
        "`application/json`) or binary mode (`ce-*` headers, the data as a JSON body), checked as the worker "
        "checks events from the bus (docs/contract.md), then published to the exchange with publisher "
        "confirms. 202 once RabbitMQ confirmed it. Control commands (`tidings.*`, but "
        "`tidings.notification.cancel`) and restricted types need the `commands` scope. Retrying with the "
        "same `source` and `id` is safe."
    ),
    responses={
        403: {"description": "the key may not publish this type (the reason says why)", "content": PROBLEM},
        415: {"description": "neither structured nor binary mode", "content": PROBLEM},
        422: {"description": "the event breaks the contract; `detail` is the reason ingest gives", "content": PROBLEM},
        503: {"description": "RabbitMQ did not take the event: send it again", "content": PROBLEM},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media_type: {
                    "schema": {
                        "type": "object",
                        "required": ["specversion", "id", "source", "type"],
                        "properties": {
                            "specversion": {"const": "1.0"},
                            "id": {"type": "string"},
                            "source": {"type": "string"},
                            "type": {"type": "string"},
                            "time": {"type": "string", "format": "date-time"},
                            "subject": {"type": "string"},
                            "datacontenttype": {"type": "string"},
                            "data": {"type": "object"},
                        },
                    }
                }
                for media_type in STRUCTURED_TYPES
            },
        }
    },
)
def post_event(key: EventsKey, request: Request, raw: Annotated[bytes, Depends(raw_body)]) -> Any:
    state = api_state(request)
    publisher = publisher_name(key, state.settings)
    try:
        body = structured_body(request.headers, raw)
        event = check_event(body, publisher, state.settings, state.catalog)
    except Unauthorized as e:
        log.warning("api_event_refused", key=key.name, reason=str(e))
        return _refusal(403, "Forbidden", f"{e} (an API key needs the {COMMANDS_SCOPE!r} scope)")
    except InvalidEvent as e:
        log.info("api_event_invalid", key=key.name, reason=str(e))
        return _refusal(422, "Unprocessable Content", str(e))
    try:
        state.publishers.publish_raw(
            body, routing_key=event.type, message_id=event.id, headers={ORIGINAL_PUBLISHER_HEADER: publisher}
        )
    except InvalidEvent as e:  # the embedded mode ingests before answering: a command's data refused
        log.info("api_event_invalid", key=key.name, reason=str(e))
        return _refusal(422, "Unprocessable Content", str(e))
    except PublishError as e:
        log.warning("api_event_not_published", key=key.name, error=str(e))
        raise ApiError(
            503,
            "Service Unavailable",
            f"the event was not published ({e}); send it again, with the same id",
            headers={"Retry-After": RETRY_AFTER},
        ) from None
    log.info("api_event_published", key=key.name, type=event.type, event_id=event.id, source=event.source)
    return EventAccepted(id=event.id, source=event.source)
