"""Signed-webhook endpoints (API key): list, create, change, rotate a secret, replay deliveries.

Every change is a tidings.webhook.upsert command, as `tidings webhooks` sends it. A secret is in a
response only when it is made (create, rotate-secret); URLs are shown cut down as the logs show them
(they often end in a token). A URL set here must lead to an address Tidings may connect to.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from channels import channel_names
from channels.http import redact_url
from dispatcher.commands.endpoints import check_url, new_secret, replay_deliveries
from dispatcher.core import clock
from dispatcher.core.api_keys import ApiKey
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import parse_time
from dispatcher.core.settings import Settings
from dispatcher.storage.models import WebhookEndpoint

from .auth import api_key
from .control import apply_now, check_egress, unprocessable, write_session
from .database import session
from .problems import PROBLEM_JSON, ApiError, Problem, not_found
from .schemas import rfc3339
from .state import api_state

router = APIRouter(tags=["webhooks"])

EndpointId = Annotated[str, Path(description="The endpoint's id, as it was created.")]
WebhooksKey = Annotated[ApiKey, Depends(api_key("webhooks"))]
UPSERT = "tidings.webhook.upsert"
PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{Problem.__name__}"}}}


class Endpoint(BaseModel):
    """A webhook endpoint as the API shows it: its URL cut down, never its secret."""

    model_config = ConfigDict(extra="forbid")

    id: str
    url: str = Field(description="scheme://host/first-segments/***: the rest may hold a token")
    types: list[str]
    enabled: bool
    disabled_reason: str | None
    owner: str | None
    failing_since: dt.datetime | None
    rotating_secret: bool = Field(description="the previous secret still signs too (TIDINGS_SECRET_ROTATION_OVERLAP)")
    created_at: dt.datetime

    @field_serializer("failing_since", "created_at")
    def _utc(self, value: dt.datetime | None) -> str | None:
        return rfc3339(value)


class EndpointList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Endpoint]


class CreatedEndpoint(Endpoint):
    """The endpoint just created, with its secret: the only time it is shown."""

    secret: str


class NewEndpoint(BaseModel):
    """An endpoint to create. Without ``secret``, Tidings makes one (returned once)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"id": "scores", "url": "https://hooks.example.com/tidings", "types": ["match.*"]}]
        },
    )

    id: str
    url: str
    types: list[str] = Field(description='glob patterns of event types, such as "match.*"')
    owner: str | None = Field(default=None, description="the user told when the endpoint gets disabled")
    enabled: bool = True
    secret: str | None = Field(default=None, description='"whsec_" + base64 of 24 to 64 random bytes')


class EndpointChange(BaseModel):
    """The fields to change; a field left out is kept. Secrets change through rotate-secret."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})

    url: str | None = None
    types: list[str] | None = None
    owner: str | None = None
    enabled: bool | None = None


class RotatedSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    secret: str = Field(description="the new secret: the only time it is shown")
    previous_secret_valid_until: dt.datetime = Field(description="the old secret also signs until then")

    @field_serializer("previous_secret_valid_until")
    def _utc(self, value: dt.datetime) -> str | None:
        return rfc3339(value)


class Replay(BaseModel):
    """Which deliveries to this endpoint to send again: one event's, or every failed one since a time."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"since": "2026-05-09T00:00:00Z"}]})

    event_id: str | None = None
    source: str | None = Field(default=None, description="the event's source, when several events share the id")
    since: str | None = Field(default=None, description="RFC 3339: every failed delivery updated since then")


class Replayed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replayed: int = Field(description="deliveries made due again; the scheduler sends them within a minute")


def endpoint_view(endpoint: WebhookEndpoint, settings: Settings) -> Endpoint:
    overlap = dt.timedelta(seconds=settings.secret_rotation_overlap)
    rotating = bool(endpoint.previous_secret and endpoint.rotated_at and clock.now() < endpoint.rotated_at + overlap)
    return Endpoint(
        id=endpoint.id,
        url=redact_url(endpoint.url),
        types=list(endpoint.types),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        owner=endpoint.owner,
        failing_since=endpoint.failing_since,
        rotating_secret=rotating,
        created_at=endpoint.created_at,
    )


def _existing(endpoint_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.get_or_none(WebhookEndpoint.id == endpoint_id)
    if endpoint is None:
        raise not_found("webhook endpoint")
    return endpoint


def _check_url(url: str | None, settings: Settings) -> None:
    """The command's own check of a URL, then the egress check of where it leads."""
    if url is not None:
        check_egress("url", check_url(url), settings)


@router.get("/v1/webhooks", response_model=EndpointList, summary="The webhook endpoints")
def list_endpoints(request: Request, key: WebhooksKey) -> EndpointList:
    settings = api_state(request).settings
    with session():
        rows = WebhookEndpoint.select().order_by(WebhookEndpoint.id)
        return EndpointList(items=[endpoint_view(row, settings) for row in rows])


@router.post(
    "/v1/webhooks",
    status_code=201,
    response_model=CreatedEndpoint,
    summary="Create a webhook endpoint",
    responses={409: {"description": "An endpoint has this id: change it with PATCH", "content": PROBLEM}},
)
def create_endpoint(body: NewEndpoint, request: Request, key: WebhooksKey) -> CreatedEndpoint:
    state = api_state(request)
    data = {**body.model_dump(), "secret": body.secret or new_secret()}
    try:
        _check_url(body.url, state.settings)
        with write_session():
            if WebhookEndpoint.get_or_none(WebhookEndpoint.id == body.id) is not None:
                raise ApiError(409, "Conflict", f"a webhook endpoint {body.id!r} exists: change it with PATCH")
            apply_now(state.catalog, key, UPSERT, data)
            view = endpoint_view(_existing(body.id), state.settings)
    except InvalidEvent as e:
        raise unprocessable(e, NewEndpoint.model_fields) from None
    return CreatedEndpoint(**dict(view), secret=data["secret"])


@router.patch("/v1/webhooks/{endpoint_id}", response_model=Endpoint, summary="Change a webhook endpoint")
def change_endpoint(
    body: EndpointChange,
    request: Request,
    endpoint_id: EndpointId,
    key: WebhooksKey,
) -> Endpoint:
    state = api_state(request)
    changes = body.model_dump(exclude_unset=True)
    try:
        _check_url(changes.get("url"), state.settings)
        with write_session():
            _existing(endpoint_id)
            if changes:
                apply_now(state.catalog, key, UPSERT, {"id": endpoint_id, **changes})
            return endpoint_view(_existing(endpoint_id), state.settings)
    except InvalidEvent as e:
        raise unprocessable(e, EndpointChange.model_fields) from None


@router.post(
    "/v1/webhooks/{endpoint_id}/rotate-secret",
    response_model=RotatedSecret,
    summary="Give a webhook endpoint a new secret",
    description="The old secret keeps signing beside the new one for TIDINGS_SECRET_ROTATION_OVERLAP.",
)
def rotate_secret(request: Request, endpoint_id: EndpointId, key: WebhooksKey) -> RotatedSecret:
    state = api_state(request)
    secret = new_secret()
    with write_session():
        _existing(endpoint_id)
        apply_now(state.catalog, key, UPSERT, {"id": endpoint_id, "secret": secret})
        rotated_at = _existing(endpoint_id).rotated_at or clock.now()  # set by the command: the secret changed
    until = rotated_at + dt.timedelta(seconds=state.settings.secret_rotation_overlap)
    return RotatedSecret(id=endpoint_id, secret=secret, previous_secret_valid_until=until)


@router.post(
    "/v1/webhooks/{endpoint_id}/replay",
    status_code=202,
    response_model=Replayed,
    summary="Send webhooks to this endpoint again",
    description="With their original webhook-id, so receivers that saw one can tell. Give `event_id` "
    "(and `source` when several events share it) for one event's, or `since` for every failed one since then.",
)
def replay(body: Replay, request: Request, endpoint_id: EndpointId, key: WebhooksKey) -> Replayed:
    try:
        since = clock.to_utc_naive(parse_time(body.since, "since")) if body.since is not None else None
        with write_session():
            _existing(endpoint_id)
            replayed = replay_deliveries(
                channel_names(addresses="endpoint"),
                event_id=body.event_id,
                source=body.source,
                since=since,
                endpoint=endpoint_id,
            )
    except InvalidEvent as e:
        raise unprocessable(e, Replay.model_fields) from None
    return Replayed(replayed=replayed)
