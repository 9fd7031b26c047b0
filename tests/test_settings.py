"""Settings: strict parsing of every TIDINGS_* variable, and URLs safe to log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dispatcher.core.errors import ConfigError
from dispatcher.core.settings import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    DEFAULT_MAX_EVENT_BYTES,
    MIN_SECRET_KEY_LENGTH,
    PROJECT_ROOT,
    Settings,
    parse_bool,
    redact_url,
)


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    # given / when
    settings = Settings.from_env({})

    # then
    assert settings.broker_url == DEFAULT_BROKER_URL
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.exchange == "events"
    assert settings.namespace == "tidings"
    assert settings.max_event_bytes == DEFAULT_MAX_EVENT_BYTES == 256 * 1024
    assert settings.retry_max == 12
    assert settings.stale_after == 600.0
    assert settings.public_url is None and settings.secret_key is None
    assert settings.catalog_path == PROJECT_ROOT / "templates" / "catalog.toml"
    assert settings == Settings()


def test_variables_without_the_tidings_prefix_are_ignored() -> None:
    # given
    env = {"HOME": "/root", "TIDINGS": "x", "PATH": "/bin"}

    # when
    settings = Settings.from_env(env)

    # then
    assert settings == Settings()


def test_valid_values_are_parsed_into_their_types() -> None:
    # given
    env = {
        "TIDINGS_RETRY_MAX": "3",
        "TIDINGS_STALE_AFTER": "1.5",
        "TIDINGS_NAMESPACE": "  staging-1 ",
        "TIDINGS_LOG_FORMAT": "json",
        "TIDINGS_DATABASE_URL": "postgresql://tidings@db.internal:5432/tidings",
        "TIDINGS_PUBLIC_URL": "https://notify.example.com",
        "TIDINGS_SECRET_KEY": "s3cret-s3cret-s3cret-s3cret-s3cr",
        "TIDINGS_UNSUBSCRIBE_TOKEN_TTL": "86400",
    }

    # when
    settings = Settings.from_env(env)

    # then
    assert settings.retry_max == 3
    assert settings.stale_after == 1.5
    assert settings.namespace == "staging-1"
    assert settings.queue("ingest") == "staging-1.ingest"
    assert settings.log_format == "json"
    assert settings.database_url == "postgresql://tidings@db.internal:5432/tidings"
    assert settings.public_url == "https://notify.example.com"
    assert settings.secret_key == "s3cret-s3cret-s3cret-s3cret-s3cr"
    assert settings.unsubscribe_token_ttl == 86400.0


@pytest.mark.parametrize("raw, expected", [("true", True), ("false", False)])
def test_a_boolean_accepts_exactly_true_or_false(raw: str, expected: bool) -> None:
    # given / when / then
    assert parse_bool(raw) is expected


@pytest.mark.parametrize("raw", ["True", "FALSE", "1", "0", "yes", "no", "on", "", " true"])
def test_a_boolean_rejects_anything_but_lowercase_true_or_false(raw: str) -> None:
    # given / when / then
    with pytest.raises(ValueError, match="must be 'true' or 'false'"):
        parse_bool(raw)


@pytest.mark.parametrize(
    "raw, message",
    [
        ("three", "TIDINGS_RETRY_MAX must be a whole number"),
        ("2.5", "TIDINGS_RETRY_MAX must be a whole number"),
        ("0", "TIDINGS_RETRY_MAX must be greater than 0"),
        ("-4", "TIDINGS_RETRY_MAX must be greater than 0"),
    ],
)
def test_a_whole_number_setting_rejects_other_values(raw: str, message: str) -> None:
    # given
    env = {"TIDINGS_RETRY_MAX": raw}

    # when / then
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "raw, message",
    [
        ("ten", "TIDINGS_STALE_AFTER must be a number of seconds"),
        ("10s", "TIDINGS_STALE_AFTER must be a number of seconds"),
        ("0", "TIDINGS_STALE_AFTER must be greater than 0"),
        ("-1", "TIDINGS_STALE_AFTER must be greater than 0"),
        ("nan", "TIDINGS_STALE_AFTER must be greater than 0"),
        ("inf", "TIDINGS_STALE_AFTER must be a finite number of seconds"),
        ("1e999", "TIDINGS_STALE_AFTER must be a finite number of seconds"),
    ],
)
def test_a_seconds_setting_rejects_other_values(raw: str, message: str) -> None:
    # given
    env = {"TIDINGS_STALE_AFTER": raw}

    # when / then
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_an_unknown_tidings_variable_is_rejected_with_a_did_you_mean_hint() -> None:
    # given
    env = {"TIDINGS_BROKER_ULR": "amqp://127.0.0.1"}

    # when / then
    with pytest.raises(
        ConfigError, match=r"TIDINGS_BROKER_ULR is not a Tidings setting \(did you mean TIDINGS_BROKER_URL\?\)"
    ):
        Settings.from_env(env)


def test_an_unknown_tidings_variable_unlike_any_setting_is_rejected_without_a_hint() -> None:
    # given
    env = {"TIDINGS_ZZZZZZZZZZZZZZZZZZ": "1"}

    # when / then
    with pytest.raises(ConfigError, match=r"^TIDINGS_ZZZZZZZZZZZZZZZZZZ is not a Tidings setting$"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "key, raw, message",
    [
        (
            "TIDINGS_BROKER_URL",
            "http://127.0.0.1:5672",
            "TIDINGS_BROKER_URL must be a URL starting with amqp:// or amqps://",
        ),
        ("TIDINGS_BROKER_URL", "amqp://", "TIDINGS_BROKER_URL has no host"),
        ("TIDINGS_BROKER_URL", "amqp://127.0.0.1:99999/", "TIDINGS_BROKER_URL has an invalid port"),
        ("TIDINGS_BROKER_URL", "amqp://127.0.0.1:port/", "TIDINGS_BROKER_URL has an invalid port"),
        ("TIDINGS_SMTP_URL", "mailto:ops@example.com", "TIDINGS_SMTP_URL must be a URL starting with smtp://"),
        ("TIDINGS_SMTP_URL", "smtp://:25", "TIDINGS_SMTP_URL has no host"),
        (
            "TIDINGS_PUBLIC_URL",
            "ftp://example.com",
            "TIDINGS_PUBLIC_URL must be a URL starting with http:// or https://",
        ),
        ("TIDINGS_PUBLIC_URL", "https:///path", "TIDINGS_PUBLIC_URL has no host"),
        ("TIDINGS_DATABASE_URL", "mysql://db/tidings", "TIDINGS_DATABASE_URL must be a URL starting with sqlite://"),
        ("TIDINGS_DATABASE_URL", "sqlite:///", "TIDINGS_DATABASE_URL names no database"),
        ("TIDINGS_DATABASE_URL", "postgresql://db:70000/tidings", "TIDINGS_DATABASE_URL has an invalid port"),
    ],
)
def test_a_bad_url_is_rejected_naming_the_variable(key: str, raw: str, message: str) -> None:
    # given
    env = {key: raw}

    # when / then
    with pytest.raises(ConfigError, match="^" + message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "key, raw, message",
    [
        ("TIDINGS_NAMESPACE", "", "TIDINGS_NAMESPACE must not be empty"),
        ("TIDINGS_NAMESPACE", "1abc", "TIDINGS_NAMESPACE must start with a letter"),
        ("TIDINGS_EXCHANGE", "events#all", "TIDINGS_EXCHANGE must start with a letter"),
        ("TIDINGS_LOG_LEVEL", "verbose", "TIDINGS_LOG_LEVEL must be one of debug, info, warning, error"),
        ("TIDINGS_MAIL_FROM", "not an address", "TIDINGS_MAIL_FROM is not a mail address"),
        ("TIDINGS_MAIL_FROM", "Tidings <noreply@example.>", "TIDINGS_MAIL_FROM is not a mail address"),
        ("TIDINGS_MAIL_FROM", "Tidings <@example.com>", "TIDINGS_MAIL_FROM is not a mail address"),
        (
            "TIDINGS_MAIL_FROM",
            "A <a@example.com>\nBcc: b@example.com",
            "TIDINGS_MAIL_FROM must not contain line breaks",
        ),
    ],
)
def test_other_malformed_values_are_rejected_naming_the_variable(key: str, raw: str, message: str) -> None:
    # given
    env = {key: raw}

    # when / then
    with pytest.raises(ConfigError, match="^" + message):
        Settings.from_env(env)


def test_a_public_url_without_a_secret_key_is_rejected() -> None:
    # given
    env = {"TIDINGS_PUBLIC_URL": "https://notify.example.com"}

    # when / then
    with pytest.raises(ConfigError, match="TIDINGS_SECRET_KEY must be set when TIDINGS_PUBLIC_URL is"):
        Settings.from_env(env)


def test_a_secret_key_shorter_than_32_characters_is_rejected_naming_the_minimum() -> None:
    # given
    env = {"TIDINGS_PUBLIC_URL": "https://notify.example.com", "TIDINGS_SECRET_KEY": "k" * 31}

    # when / then
    assert MIN_SECRET_KEY_LENGTH == 32
    with pytest.raises(ConfigError, match="^TIDINGS_SECRET_KEY must be at least 32 characters long"):
        Settings.from_env(env)


def test_a_secret_key_of_32_characters_is_accepted() -> None:
    # given
    env = {"TIDINGS_PUBLIC_URL": "https://notify.example.com", "TIDINGS_SECRET_KEY": "k" * 32}

    # when
    settings = Settings.from_env(env)

    # then
    assert settings.secret_key == "k" * 32


def test_unsubscribe_tokens_last_a_year_by_default() -> None:
    assert Settings.from_env({}).unsubscribe_token_ttl == 365 * 24 * 3600.0


def test_a_catalog_that_does_not_exist_is_rejected(tmp_path: Path) -> None:
    # given
    env = {"TIDINGS_CATALOG": str(tmp_path / "missing.toml")}

    # when / then
    with pytest.raises(ConfigError, match=r"does not exist \(TIDINGS_CATALOG\)"):
        Settings.from_env(env)


def test_a_minimum_backoff_above_the_maximum_is_rejected() -> None:
    # given
    env = {"TIDINGS_RETRY_MIN_BACKOFF": "60", "TIDINGS_RETRY_MAX_BACKOFF": "30"}

    # when / then
    with pytest.raises(ConfigError, match="TIDINGS_RETRY_MIN_BACKOFF must not exceed TIDINGS_RETRY_MAX_BACKOFF"):
        Settings.from_env(env)


def test_redact_url_hides_the_password_but_keeps_user_host_and_port() -> None:
    # given
    url = "amqp://guest:hunter2@rabbit.internal:5672/%2F"

    # when
    redacted = redact_url(url)

    # then
    assert redacted == "amqp://guest:***@rabbit.internal:5672"
    assert "hunter2" not in redacted


def test_redact_url_drops_the_query_string() -> None:
    # given
    url = "postgresql://tidings:pw@db.internal/tidings?sslpassword=topsecret&sslmode=require"

    # when
    redacted = redact_url(url)

    # then
    assert "topsecret" not in redacted and "?" not in redacted
    assert redacted == "postgresql://tidings:***@db.internal"


def test_redact_url_drops_the_path_so_that_webhook_tokens_never_reach_the_logs() -> None:
    # given
    url = "https://discord.com/api/webhooks/123456/AbCdEf-webhook-token?wait=true"

    # when
    redacted = redact_url(url)

    # then
    assert redacted == "https://discord.com"
    assert "AbCdEf" not in redacted and "123456" not in redacted


def test_redact_url_keeps_a_url_without_credentials_readable() -> None:
    # given / when / then
    assert redact_url("smtp://127.0.0.1:25") == "smtp://127.0.0.1:25"
    assert redact_url("smtp://mailer@relay.internal:587") == "smtp://mailer@relay.internal:587"


@pytest.mark.parametrize("url", ["sqlite:///tidings.db", "sqlite:////var/lib/tidings/tidings.db"])
def test_redact_url_keeps_sqlite_paths(url: str) -> None:
    # given / when / then
    assert redact_url(url) == url


def test_the_product_name_and_url_default_to_tidings_and_none_and_are_parsed() -> None:
    # given / when
    default = Settings.from_env({})
    named = Settings.from_env({"TIDINGS_PRODUCT_NAME": "  Acme Arena ", "TIDINGS_PRODUCT_URL": "https://acme.example"})

    # then
    assert (default.product_name, default.product_url) == ("Tidings", None)
    assert (named.product_name, named.product_url) == ("Acme Arena", "https://acme.example")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TIDINGS_PRODUCT_NAME", "  ", "TIDINGS_PRODUCT_NAME must not be empty"),
        ("TIDINGS_PRODUCT_NAME", "Acme\r\nBcc: x@example.com", "TIDINGS_PRODUCT_NAME must be one line of printable"),
        ("TIDINGS_PRODUCT_NAME", "Acme\u202eArena", "TIDINGS_PRODUCT_NAME must be one line of printable"),
        ("TIDINGS_PRODUCT_NAME", "A" * 101, "TIDINGS_PRODUCT_NAME must be at most 100 characters long"),
        ("TIDINGS_PRODUCT_URL", "acme.example", "TIDINGS_PRODUCT_URL must be a URL starting with http:// or https://"),
        ("TIDINGS_PRODUCT_URL", "javascript:alert(1)", "TIDINGS_PRODUCT_URL must be a URL starting with http://"),
        ("TIDINGS_PRODUCT_URL", "https://", "TIDINGS_PRODUCT_URL has no host"),
    ],
)
def test_a_bad_product_name_or_url_is_refused_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env({name: value})


def test_the_rabbitmq_api_url_is_not_read_unless_set_and_is_kept_as_a_base_url() -> None:
    # given / when
    unset = Settings.from_env({})
    local = Settings.from_env({"TIDINGS_RABBITMQ_API_URL": " http://127.0.0.1:15672/ "})
    proxied = Settings.from_env({"TIDINGS_RABBITMQ_API_URL": "https://monitor:hunter2@ops.internal/rabbitmq"})

    # then
    assert unset.rabbitmq_api_url is None
    assert local.rabbitmq_api_url == "http://127.0.0.1:15672"
    assert proxied.rabbitmq_api_url == "https://monitor:hunter2@ops.internal/rabbitmq"
    assert "hunter2" not in repr(proxied) and redact_url(proxied.rabbitmq_api_url) == "https://monitor:***@ops.internal"


@pytest.mark.parametrize(
    "value, message",
    [
        ("amqp://guest:guest@127.0.0.1:5672", "must be a URL starting with http:// or https://"),
        ("127.0.0.1:15672", "must be a URL starting with http:// or https://"),
        ("http://", "has no host"),
        ("http://127.0.0.1:99999", "has an invalid port"),
        ("http://127.0.0.1:15672/api/queues?columns=name", "must be a base URL such as http://127.0.0.1:15672"),
        ("http://127.0.0.1:15672/#/queues", "must be a base URL"),
    ],
)
def test_a_rabbitmq_api_url_that_is_not_an_http_base_url_is_refused_naming_the_variable(
    value: str, message: str
) -> None:
    # given
    env = {"TIDINGS_RABBITMQ_API_URL": value}

    # when / then
    with pytest.raises(ConfigError, match=rf"^TIDINGS_RABBITMQ_API_URL {re.escape(message)}"):
        Settings.from_env(env)
