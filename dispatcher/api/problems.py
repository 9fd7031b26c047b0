"""Errors as RFC 9457 problem details (application/problem+json), raised as one type and rendered in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("tidings.api")


class Problem(BaseModel):
    """An RFC 9457 problem: what every error answers with."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, str]] | None = None


#: The error statuses every operation may answer with, for the OpenAPI document.
COMMON_ERRORS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with every error response described as problem+json (FastAPI's default 422
    schema is not what install_error_handlers answers)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    reference = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path in document.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for status, title in COMMON_ERRORS.items():
                declared = responses.get(str(status))
                if declared is None or status == 422:  # an operation's own model (readyz's 503) stays
                    responses[str(status)] = {"description": title, "content": reference}
    return document


class ApiError(Exception):
    """An error the API answers with: its HTTP status, a short title and a detail for the caller."""

    def __init__(
        self, status: int, title: str, detail: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> dict[str, Any]:
    """The body of a problem response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    return body


def problem_response(
    status: int, title: str, detail: str | None = None, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        problem(status, title, detail, **extra), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def not_found(what: str) -> ApiError:
    return ApiError(404, "Not Found", f"no such {what}")


def _field(location: tuple[Any, ...]) -> str:
    # ("body", "preferences", 0, "channel") -> "preferences[0].channel"; the first part says where.
    name = ""
    for part in location[1:]:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or str(location[0])


def install_error_handlers(app: FastAPI) -> None:
    """Every error, whoever raised it, as problem+json."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": _field(tuple(error.get("loc", ()))),
                "in": str(error.get("loc", ("body",))[0]),
                "message": str(error.get("msg", "invalid")),
            }
            for error in exc.errors()
        ]
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors[:5])
        return problem_response(422, "Unprocessable Content", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not Found", 405: "Method Not Allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(exc.status_code, titles.get(exc.status_code, "Error"), detail, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api_unexpected_error", path=request.url.path, error=type(exc).__name__)
        return problem_response(500, "Internal Server Error", "the error is logged")
