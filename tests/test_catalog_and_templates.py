"""The shipped catalog, its templates, and load_catalog's checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from channels import channel_classes
from dispatcher.core.catalog import Catalog, load_catalog
from dispatcher.core.errors import ConfigError
from dispatcher.core.rendering import Renderer
from dispatcher.core.settings import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "templates"

EMAIL_BY_DEFAULT = {
    "team.invite.sent",
    "team.invite.accepted",
    "tournament.registered",
    "tournament.completed",
    "match.completed",
    "match.disputed",
    "sponsor.approved",
    "payout.received",
    "achievement.earned",
    "payment.verified",
    "payment.refunded",
    "system.announcement",
}
IN_APP_ONLY = {
    "team.roster.changed",
    "tournament.bracket_ready",
    "match.scheduled",
    "match.started",
    "ranking.changed",
    "series.completed",
    "promotion.started",
}
CRITICAL = {"payout.received", "payment.verified", "payment.refunded", "system.announcement"}


def context(data: dict[str, Any], *, user_name: str | None = None, url: str | None = None) -> dict[str, Any]:
    """What delivery.build_notification hands the templates."""
    return {
        "data": data,
        "event": {"id": "evt-1", "type": "t", "source": "/s", "subject": None, "time": None},
        "user": {"id": "u1", "name": user_name, "email": None, "timezone": "UTC", "locale": None},
        "url": url,
        "unsubscribe_url": None,
    }


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def write_catalog(tmp_path: Path, toml: str, *, templates_for: tuple[str, ...] = ()) -> Path:
    """A catalog file in tmp_path, with complete template folders for ``templates_for``."""
    for name in templates_for:
        folder = tmp_path / name
        folder.mkdir()
        for file in ("subject.txt", "body.txt", "body.html"):
            (folder / file).write_text("{{ data.x }}\n")
    path = tmp_path / "catalog.toml"
    path.write_text(toml)
    return path


def test_the_shipped_catalog_has_exactly_the_nineteen_documented_types_and_the_internal_digest(
    catalog: Catalog,
) -> None:
    # given / when
    names = set(catalog.public_names())

    # then
    assert len(names) == 19
    assert names == EMAIL_BY_DEFAULT | IN_APP_ONLY
    assert set(catalog.names()) - names == {"digest.daily"} and catalog.types["digest.daily"].internal


def test_the_digest_lists_each_group_with_its_count_and_escapes_titles(catalog: Catalog, renderer: Renderer) -> None:
    # given
    groups = [
        {
            "type": "match.completed",
            "description": "A match ended with a result.",
            "count": 2,
            "items": [{"title": "<b>Owls</b> won", "url": "https://x.test/m/1"}, {"title": "Cats won", "url": None}],
        }
    ]
    # when
    rendered = renderer.render("digest.daily", context({"date": "2026-03-08", "groups": groups}))
    # then
    assert rendered.subject == "Your notifications of 2026-03-08: 2 new"
    assert (
        "A match ended with a result. (2)" in rendered.text
        and "- <b>Owls</b> won <https://x.test/m/1>" in rendered.text
    )
    assert "&lt;b&gt;Owls&lt;/b&gt; won" in rendered.html and '<a href="https://x.test/m/1">' in rendered.html


@pytest.mark.parametrize("name", sorted(EMAIL_BY_DEFAULT))
def test_a_type_documented_with_email_defaults_to_in_app_and_email(catalog: Catalog, name: str) -> None:
    # given / when
    kind = catalog.get(name)

    # then
    assert kind is not None
    assert kind.channels == {"in_app", "email"}


@pytest.mark.parametrize("name", sorted(IN_APP_ONLY))
def test_a_type_documented_without_email_defaults_to_in_app_only(catalog: Catalog, name: str) -> None:
    # given / when
    kind = catalog.get(name)

    # then
    assert kind is not None
    assert kind.channels == {"in_app"}


def test_only_payments_payouts_and_announcements_are_critical(catalog: Catalog) -> None:
    # given / when
    critical = {name for name in catalog.names() if catalog.types[name].critical}

    # then
    assert critical == CRITICAL


def test_payment_types_mark_card_and_billing_data_as_personal(catalog: Catalog) -> None:
    # given / when
    personal = {
        name: set(catalog.types[name].personal) for name in ("payment.verified", "payment.refunded", "payout.received")
    }

    # then
    assert personal["payment.verified"] == personal["payment.refunded"] == {"card_last4", "billing_address"}
    assert personal["payout.received"] == {"iban", "payout_account"}


@pytest.mark.parametrize("name", sorted(EMAIL_BY_DEFAULT | IN_APP_ONLY))
def test_every_type_renders_with_only_its_required_keys_and_no_user_name_or_url(
    catalog: Catalog, renderer: Renderer, name: str
) -> None:
    # given
    kind = catalog.types[name]
    data = {key: f"<{key}-value>" for key in kind.required}

    # when
    rendered = renderer.render(name, context(data))

    # then
    assert rendered.subject.strip()
    assert rendered.text.strip()
    assert "<html" in rendered.html
    assert "None" not in rendered.subject + rendered.text + rendered.html
    for key in kind.required:
        # every required value shows up in the text body or the subject
        assert f"<{key}-value>" in rendered.subject + rendered.text, key
    assert "http" not in rendered.text + rendered.html  # no call to action without a link


@pytest.mark.parametrize("name", sorted(EMAIL_BY_DEFAULT | IN_APP_ONLY))
def test_every_type_renders_the_user_name_and_url_when_given(catalog: Catalog, renderer: Renderer, name: str) -> None:
    # given
    data = {key: "v" for key in catalog.types[name].required}

    # when
    rendered = renderer.render(name, context(data, user_name="Ada", url="https://x.test/open?a=1&b=2"))

    # then
    assert "Hi Ada," in rendered.html and rendered.email_text is not None and "Hi Ada," in rendered.email_text
    assert "https://x.test/open?a=1&amp;b=2" in rendered.html
    assert rendered.text.rstrip().endswith(": https://x.test/open?a=1&b=2")


def test_html_escapes_markup_from_event_data_while_text_keeps_it(renderer: Renderer) -> None:
    # given
    data = {"title": "<script>alert(1)</script>", "message": "Tom & Jerry <b>"}

    # when
    rendered = renderer.render("system.announcement", context(data, user_name="<img src=x>"))

    # then
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "Tom &amp; Jerry &lt;b&gt;" in rendered.html
    assert "<img src=x>" not in rendered.html
    assert "Tom & Jerry <b>" in rendered.text
    assert rendered.subject == "<script>alert(1)</script>"


def test_the_subject_is_one_line_even_when_the_data_holds_line_breaks(renderer: Renderer) -> None:
    # given
    data = {"title": "Maintenance\r\nBcc: victim@example.com\nTonight", "message": "m"}

    # when
    rendered = renderer.render("system.announcement", context(data))

    # then
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert rendered.subject == "Maintenance Bcc: victim@example.com Tonight"


def test_the_subject_is_cut_to_250_characters(renderer: Renderer) -> None:
    # given
    data = {"title": "x" * 1000, "message": "m"}

    # when
    rendered = renderer.render("system.announcement", context(data))

    # then
    assert rendered.subject == "x" * 250


def test_load_catalog_reads_a_valid_catalog(tmp_path: Path) -> None:
    # given
    path = write_catalog(
        tmp_path,
        """
[types."a.happened"]
description = "A happened."
channels = ["in_app", "discord"]
critical = true
required = ["x"]
personal = ["secret"]

[types."b.happened"]
""",
        templates_for=("a.happened", "b.happened"),
    )

    # when
    catalog = load_catalog(path, tmp_path, channels=channel_classes())

    # then
    a, b = catalog.types["a.happened"], catalog.types["b.happened"]
    assert (a.description, a.channels, a.critical, a.required, a.personal) == (
        "A happened.",
        {"in_app", "discord"},
        True,
        ("x",),
        ("secret",),
    )
    assert (b.channels, b.critical, b.required) == ({"in_app"}, False, ())


@pytest.mark.parametrize("missing", ["subject.txt", "body.txt", "body.html"])
def test_load_catalog_rejects_a_type_missing_a_template_file(tmp_path: Path, missing: str) -> None:
    # given
    path = write_catalog(tmp_path, '[types."a.happened"]\n', templates_for=("a.happened",))
    (tmp_path / "a.happened" / missing).unlink()

    # when / then
    with pytest.raises(ConfigError, match=f"catalog type 'a.happened' has no template .*{missing}"):
        load_catalog(path, tmp_path, channels=channel_classes())


def test_load_catalog_rejects_an_unknown_key(tmp_path: Path) -> None:
    # given
    path = write_catalog(tmp_path, '[types."a.happened"]\nchanels = ["in_app"]\n', templates_for=("a.happened",))

    # when / then
    with pytest.raises(ConfigError, match=r"type 'a.happened': unknown keys \['chanels'\]"):
        load_catalog(path, tmp_path, channels=channel_classes())


@pytest.mark.parametrize("channels", ['["sms"]', '["in_app", "pigeon"]', '"in_app"'])
def test_load_catalog_rejects_a_bad_channel_name(tmp_path: Path, channels: str) -> None:
    # given
    path = write_catalog(tmp_path, f'[types."a.happened"]\nchannels = {channels}\n', templates_for=("a.happened",))

    # when / then
    with pytest.raises(ConfigError, match="type 'a.happened': channels must be a list drawn from"):
        load_catalog(path, tmp_path, channels=channel_classes())


@pytest.mark.parametrize("name", ["tidings.user.upsert", "tidings.custom", "team.*", "team.#"])
def test_load_catalog_rejects_a_reserved_or_wildcard_type_name(tmp_path: Path, name: str) -> None:
    # given
    path = write_catalog(tmp_path, f'[types."{name}"]\n')

    # when / then
    with pytest.raises(ConfigError, match=f"type '{name}': the name is reserved or not a valid routing key"):
        load_catalog(path, channels=channel_classes())


@pytest.mark.parametrize(
    "entry, message",
    [
        ('critical = "yes"', "critical must be true or false"),
        ('required = "x"', "required must be a list of strings"),
        ("personal = [1]", "personal must be a list of strings"),
    ],
)
def test_load_catalog_rejects_malformed_values(tmp_path: Path, entry: str, message: str) -> None:
    # given
    path = write_catalog(tmp_path, f'[types."a.happened"]\n{entry}\n')

    # when / then
    with pytest.raises(ConfigError, match=message):
        load_catalog(path, channels=channel_classes())


@pytest.mark.parametrize(
    "toml, message",
    [
        ("this is = not toml [", "cannot read the catalog"),
        ("[other]\nx = 1\n", "has no \\[types"),
    ],
)
def test_load_catalog_rejects_a_file_without_types(tmp_path: Path, toml: str, message: str) -> None:
    # given
    path = write_catalog(tmp_path, toml)

    # when / then
    with pytest.raises(ConfigError, match=message):
        load_catalog(path, channels=channel_classes())


def test_load_catalog_rejects_a_missing_file(tmp_path: Path) -> None:
    # given
    path = tmp_path / "nowhere.toml"

    # when / then
    with pytest.raises(ConfigError, match="cannot read the catalog"):
        load_catalog(path, channels=channel_classes())
