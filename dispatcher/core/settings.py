"""Settings: every TIDINGS_* environment variable, parsed once and strictly.

Call :func:`get_settings` (cached) or :meth:`Settings.from_env` (tests).
An unknown TIDINGS_* variable is an error, so a typo cannot silently leave
a default in force.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dispatcher.core.api_keys import ApiKey, parse_api_keys
from dispatcher.core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "TIDINGS_"

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_DATABASE_URL = "sqlite:///tidings.db"
DEFAULT_SMTP_URL = "smtp://127.0.0.1:25"
#: Without a display name of its own, the From header shows TIDINGS_PRODUCT_NAME.
DEFAULT_MAIL_FROM = "tidings@localhost"
DEFAULT_PRODUCT_NAME = "Tidings"
#: A product name is a header's display name and a footer's words: one short line.
MAX_PRODUCT_NAME_LENGTH = 100
DEFAULT_MAX_EVENT_BYTES = 256 * 1024
#: TIDINGS_SECRET_KEY signs unsubscribe links: shorter keys can be guessed offline from one link.
MIN_SECRET_KEY_LENGTH = 32
#: Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def parse_str(value: str) -> str:
    """A non-empty string."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def parse_name(value: str) -> str:
    """An AMQP-safe name: letters, digits, '.', '_' and '-'."""
    value = parse_str(value)
    if not all(ch.isalnum() or ch in "._-" for ch in value) or not value[0].isalpha():
        raise ValueError("must start with a letter and hold only letters, digits, '.', '_' and '-'")
    return value


def parse_bool(value: str) -> bool:
    """Only 'true' or 'false': anything else is a mistake worth stopping for."""
    if value == "true":
        return True
    if value == "false":
        return False
    raise ValueError("must be 'true' or 'false'")


def parse_positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if number <= 0:
        raise ValueError("must be greater than 0")
    return number


def parse_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not math.isfinite(number) and number > 0:
        raise ValueError("must be a finite number of seconds")
    if not number > 0:
        raise ValueError("must be greater than 0")
    return number


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def parse_url(*schemes: str, host: bool = True) -> Callable[[str], str]:
    def parse(value: str) -> str:
        parts = urllib.parse.urlsplit(value.strip())
        if parts.scheme not in schemes:
            raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
        if host and not parts.hostname:
            raise ValueError("has no host")
        if not host and not parts.hostname and not parts.path.strip("/"):
            raise ValueError("names no database")
        try:
            parts.port  # noqa: B018 - validates the port number
        except ValueError:
            raise ValueError("has an invalid port") from None
        return value.strip()

    return parse


def parse_base_url(*schemes: str) -> Callable[[str], str]:
    """A URL other paths are appended to: no query, no fragment, no trailing '/'."""
    url = parse_url(*schemes)

    def parse(value: str) -> str:
        value = url(value)
        parts = urllib.parse.urlsplit(value)
        if parts.query or parts.fragment:
            raise ValueError("must be a base URL such as http://127.0.0.1:15672, without '?' or '#'")
        return value.rstrip("/")

    return parse


def parse_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma-separated list of CIDR ranges, e.g. '10.0.0.0/8,fd00::/8'."""
    networks = []
    for item in value.split(","):
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"has {item.strip()!r}, which is not a CIDR range such as 10.0.0.0/8") from None
    return tuple(networks)


def parse_schedule(value: str) -> tuple[float, ...]:
    """Comma-separated delays in seconds, the first attempt's (usually 0) first."""
    try:
        delays = tuple(float(item) for item in value.split(","))
    except ValueError:
        raise ValueError("must be comma-separated numbers of seconds, e.g. 0,5,300") from None
    if not delays or any(not math.isfinite(d) or d < 0 for d in delays):
        raise ValueError("must hold at least one delay, none negative")
    return delays


def parse_ids(value: str) -> tuple[str, ...]:
    """Comma-separated ids."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_channel_names(value: str) -> tuple[str, ...]:
    """Comma-separated channel names (which are registered is checked at start: channels.check_switches)."""
    names = parse_ids(value)
    if not names:
        raise ValueError("must name at least one channel (leave it unset for all of them)")
    for name in names:
        if not name.isidentifier() or not name.islower():
            raise ValueError(f"names {name[:40]!r}, which is not a channel name (lower case, like in_app or email)")
    if len(set(names)) != len(names):
        raise ValueError("names a channel twice")
    return names


def parse_port(value: str) -> int:
    """A TCP port, 1 to 65535."""
    port = parse_positive_int(value)
    if port > 65535:
        raise ValueError("must be a TCP port (1 to 65535)")
    return port


def parse_origins(value: str) -> tuple[str, ...]:
    """Comma-separated web origins (scheme://host[:port], no path); never "*"."""
    origins = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        parts = urllib.parse.urlsplit(item)
        if item == "*" or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must list origins such as https://app.example.com, not {item[:100]!r}")
        if parts.path or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"an origin is scheme://host[:port] only, not {item[:100]!r}")
        origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(origins)


def parse_path(value: str) -> Path:
    return Path(parse_str(value)).expanduser().resolve()


def parse_product_name(value: str) -> str:
    """A short name on one line, without control characters: it becomes a display name and a footer."""
    value = parse_str(value)
    if not value.isprintable():
        raise ValueError("must be one line of printable characters")
    if len(value) > MAX_PRODUCT_NAME_LENGTH:
        raise ValueError(f"must be at most {MAX_PRODUCT_NAME_LENGTH} characters long")
    return value


def parse_mailbox(value: str) -> str:
    """An RFC 5322 mailbox such as 'Tidings <noreply@example.com>'."""
    from email.errors import HeaderParseError
    from email.headerregistry import Address
    from email.utils import parseaddr

    value = parse_str(value)
    if "\r" in value or "\n" in value:
        raise ValueError("must not contain line breaks")
    name, address = parseaddr(value)
    try:
        Address(display_name=name, addr_spec=address)
    except (ValueError, IndexError, HeaderParseError) as e:
        raise ValueError(f"is not a mail address ({e})") from None
    if "@" not in address:
        raise ValueError("is not a mail address")
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Tidings' configuration; field names are the variables without TIDINGS_."""

    broker_url: str = DEFAULT_BROKER_URL
    #: RabbitMQ's management API, for messages unacknowledged (ops/rabbitmq_api.py); None: not read.
    rabbitmq_api_url: str | None = dataclasses.field(default=None, repr=False)
    exchange: str = "events"
    namespace: str = "tidings"
    database_url: str = DEFAULT_DATABASE_URL
    smtp_url: str = DEFAULT_SMTP_URL
    smtp_timeout: float = 10.0
    smtp_ca_file: Path | None = None
    mail_from: str = DEFAULT_MAIL_FROM
    product_name: str = DEFAULT_PRODUCT_NAME
    product_url: str | None = None
    public_url: str | None = None
    secret_key: str | None = None
    templates_dir: Path = PROJECT_ROOT / "templates"
    catalog: Path | None = None
    log_format: str = "console"
    log_level: str = "info"
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    retry_max: int = 12
    retry_min_backoff: float = 5.0
    retry_max_backoff: float = 300.0
    stale_after: float = 600.0
    discord_webhook_url: str | None = None
    #: The channels that deliver (TIDINGS_CHANNELS); None: every registered one. A delivery on another is skipped.
    channels: tuple[str, ...] | None = None
    allow_private_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    http_ca_file: Path | None = None
    http_connect_timeout: float = 5.0
    http_read_timeout: float = 10.0
    http_total_timeout: float = 30.0
    http_max_response_bytes: int = 64 * 1024
    webhook_retry_schedule: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_SCHEDULE
    webhook_disable_after: float = 5 * 24 * 3600.0
    secret_rotation_overlap: float = 24 * 3600.0
    operators: tuple[str, ...] = ()
    command_users: tuple[str, ...] = ()
    max_clock_skew: float = 300.0
    unsubscribe_token_ttl: float = 365 * 24 * 3600.0
    queue_type: str = "classic"
    schedule_horizon: float = 365 * 24 * 3600.0
    retention_days: int = 90
    dedup_days: int = 30
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_max_body_bytes: int = DEFAULT_MAX_EVENT_BYTES + 16 * 1024
    http_rate_limit: int = 600  # requests per minute and token (or client address, without one)
    cors_origins: tuple[str, ...] = ()
    user_token_secret: str | None = dataclasses.field(default=None, repr=False)
    user_token_max_ttl: float = 24 * 3600.0
    api_keys: tuple[ApiKey, ...] = dataclasses.field(default=(), repr=False)
    #: The key `tidings publish --api URL` sends (TIDINGS_API_KEY): a client's, not one this Tidings accepts.
    api_key: str | None = dataclasses.field(default=None, repr=False)

    @property
    def catalog_path(self) -> Path:
        return self.catalog or self.templates_dir / "catalog.toml"

    @property
    def broker_user(self) -> str:
        """The RabbitMQ user Tidings connects as."""
        return broker_user(self.broker_url)

    @property
    def authorised_users(self) -> frozenset[str]:
        """The RabbitMQ users that may send every control command and type: TIDINGS_COMMAND_USERS and Tidings'."""
        return frozenset({*self.command_users, self.broker_user})

    def delivers(self, channel: str) -> bool:
        """Whether ``channel`` is switched on (TIDINGS_CHANNELS names it, or is unset)."""
        return self.channels is None or channel in self.channels

    def queue(self, name: str) -> str:
        """The namespaced name of one of Tidings' queues."""
        return f"{self.namespace}.{name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse settings from ``env`` (default ``os.environ``); raise ConfigError."""
        env = os.environ if env is None else env
        known = {PREFIX + field.upper(): field for field in PARSERS}
        values: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith(PREFIX):
                continue
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                did_you_mean = f" (did you mean {hint[0]}?)" if hint else ""
                raise ConfigError(f"{key} is not a Tidings setting{did_you_mean}")
            try:
                values[known[key]] = PARSERS[known[key]](raw)
            except ValueError as e:
                raise ConfigError(f"{key} {e}") from None
        settings = cls(**values)
        if settings.public_url and not settings.secret_key:
            raise ConfigError("TIDINGS_SECRET_KEY must be set when TIDINGS_PUBLIC_URL is (it signs unsubscribe links)")
        if not settings.catalog_path.is_file():
            raise ConfigError(f"the catalog {settings.catalog_path} does not exist (TIDINGS_CATALOG)")
        for name in ("smtp_ca_file", "http_ca_file"):
            path = getattr(settings, name)
            if path and not path.is_file():
                raise ConfigError(f"TIDINGS_{name.upper()} {path} does not exist")
        if settings.secret_key is not None and len(settings.secret_key) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"TIDINGS_SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters long "
                "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if settings.user_token_secret is not None and len(settings.user_token_secret) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(f"TIDINGS_USER_TOKEN_SECRET must be at least {MIN_SECRET_KEY_LENGTH} characters long")
        if settings.http_total_timeout < settings.http_connect_timeout:
            raise ConfigError("TIDINGS_HTTP_TOTAL_TIMEOUT must not be shorter than TIDINGS_HTTP_CONNECT_TIMEOUT")
        if settings.retry_min_backoff > settings.retry_max_backoff:
            raise ConfigError("TIDINGS_RETRY_MIN_BACKOFF must not exceed TIDINGS_RETRY_MAX_BACKOFF")
        return settings


PARSERS: dict[str, Callable[[str], Any]] = {
    "broker_url": parse_url("amqp", "amqps"),
    "rabbitmq_api_url": parse_base_url("http", "https"),
    "exchange": parse_name,
    "namespace": parse_name,
    "database_url": parse_url("sqlite", "postgresql", "postgres", "postgresql+pool", "postgres+pool", host=False),
    "smtp_url": parse_url("smtp", "smtps", "smtp+starttls"),
    "smtp_timeout": parse_seconds,
    "smtp_ca_file": parse_path,
    "mail_from": parse_mailbox,
    "product_name": parse_product_name,
    "product_url": parse_url("http", "https"),
    "public_url": parse_url("http", "https"),
    "secret_key": parse_str,
    "templates_dir": parse_path,
    "catalog": parse_path,
    "log_format": parse_choice("console", "json"),
    "log_level": parse_choice("debug", "info", "warning", "error"),
    "max_event_bytes": parse_positive_int,
    "retry_max": parse_positive_int,
    "retry_min_backoff": parse_seconds,
    "retry_max_backoff": parse_seconds,
    "stale_after": parse_seconds,
    "discord_webhook_url": parse_url("https"),
    "channels": parse_channel_names,
    "allow_private_networks": parse_networks,
    "http_ca_file": parse_path,
    "http_connect_timeout": parse_seconds,
    "http_read_timeout": parse_seconds,
    "http_total_timeout": parse_seconds,
    "http_max_response_bytes": parse_positive_int,
    "webhook_retry_schedule": parse_schedule,
    "webhook_disable_after": parse_seconds,
    "secret_rotation_overlap": parse_seconds,
    "operators": parse_ids,
    "command_users": parse_ids,
    "max_clock_skew": parse_seconds,
    "unsubscribe_token_ttl": parse_seconds,
    "queue_type": parse_choice("classic", "quorum"),
    "schedule_horizon": parse_seconds,
    "retention_days": parse_positive_int,
    "dedup_days": parse_positive_int,
    "http_host": parse_str,
    "http_port": parse_port,
    "http_max_body_bytes": parse_positive_int,
    "http_rate_limit": parse_positive_int,
    "cors_origins": parse_origins,
    "user_token_secret": parse_str,
    "user_token_max_ttl": parse_seconds,
    "api_keys": parse_api_keys,
    "api_key": parse_str,
}

_settings: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, parsed from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def broker_user(broker_url: str) -> str:
    """The RabbitMQ user an AMQP URL connects as (guest when it names none, as pika does)."""
    return urllib.parse.unquote(urllib.parse.urlsplit(broker_url).username or "guest")


def redact_url(url: str) -> str:
    """A URL safe to log: no password, no query string, no path beyond the first segment."""
    parts = urllib.parse.urlsplit(url)
    if not parts.netloc:
        return f"{parts.scheme}://{parts.path}"  # sqlite:///file.db holds no secret
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.password else (f"{parts.username}@" if parts.username else "")
    return f"{parts.scheme}://{user}{host}"
