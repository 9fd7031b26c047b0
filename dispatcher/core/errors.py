"""The exceptions Tidings raises: one root, and a permanent/transient split.

A *permanent* error means trying again cannot help (a malformed event, an
SMTP 5xx reply); a *transient* one means it may (a 4xx reply, a dropped
connection). Actors list the permanent errors in ``throws=`` so dramatiq
dead-letters them at once instead of retrying.
"""

from __future__ import annotations


class TidingsError(Exception):
    """Base class for every error Tidings raises on purpose."""

    permanent: bool = False


class ConfigError(TidingsError):
    """A setting is missing or malformed; the process cannot start."""

    permanent = True


class PermanentError(TidingsError):
    """Base class for failures that no retry can fix."""

    permanent = True


class InvalidEvent(PermanentError):
    """An incoming event breaks the publisher contract (docs/contract.md)."""


class InvalidCommand(InvalidEvent):
    """A ``tidings.*`` control command has malformed data."""


class Unauthorized(InvalidEvent):
    """The event's publisher may not send it (a control command, a restricted type)."""


class DeliveryError(TidingsError):
    """A channel failed to deliver; ``permanent`` says whether to retry.

    Mirrors healthchecks' ``TransportError(message, permanent=False)``.
    """

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        #: Seconds the target asked us to wait (Retry-After), if it said.
        self.retry_after = retry_after


class DeliverySkipped(TidingsError):
    """The delivery cannot apply to this user (no email address, say); not a failure."""

    permanent = True
