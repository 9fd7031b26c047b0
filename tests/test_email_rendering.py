"""Every catalog type's email, as the SMTP channel builds it: the text and HTML parts say the same, with and
without the type's optional fields; a call to action only with a link; placements read as people write them;
the product named by TIDINGS_PRODUCT_NAME and TIDINGS_PRODUCT_URL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import html.parser
import re
from email.message import EmailMessage
from typing import Any

import pytest

from channels.base import Notification
from channels.email import SmtpChannel
from dispatcher.core.catalog import Catalog
from dispatcher.core.rendering import Renderer, ordinal, rank
from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.pipeline.delivery import run_delivery
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import Preference, User
from tests.support.events import parsed_event
from tests.support.smtp import SmtpServer

TEMPLATES = PROJECT_ROOT / "templates"
MARKUP = "Tom & <i>Jerry</i>"
LINK = "https://play.example/open?a=1&b=2"
UNSUBSCRIBE = "https://notify.example/unsubscribe/tok.en"
PRODUCT = {"name": "Acme Arena", "url": "https://acme.example"}

#: The keys of ``data`` each type's templates read besides its required ones, with a value to give them.
OPTIONAL: dict[str, dict[str, Any]] = {
    "achievement.earned": {"description": "Win ten matches & more."},
    "match.completed": {"score": "2-1"},
    "payout.received": {"tournament_name": "Spring <Cup>"},
    "promotion.started": {"ends_at": "2026-06-01"},
    "ranking.changed": {"scope": "tournament:t1", "tournament_id": "t1", "tournament_name": "Spring <Cup>"},
    "series.completed": {"decided_by": "forfeit", "tournament_name": "Spring <Cup>", "won": True},
    "sponsor.approved": {"team_name": "Wolves & Co"},
    "team.invite.sent": {"role": "captain"},
    "tournament.completed": {"placement": "2nd"},
    "tournament.registered": {"starts_at": "2026-06-01T18:00:00Z"},
}
#: Required keys that are not text.
NUMBERS = {"old_rank": 5, "new_rank": 2, "points": 1200, "amount": 49.5, "best_of": 3}


def required_data(catalog: Catalog, name: str) -> dict[str, Any]:
    """The type's required keys only: markup in every text value, numbers where numbers go."""
    if name == "digest.daily":
        items = [{"title": MARKUP, "url": LINK}, {"title": "Second", "url": None}]
        return {"date": "2026-05-09", "groups": [{"description": "Invitations", "count": 2, "items": items}]}
    return {key: NUMBERS.get(key, f"{key} {MARKUP}") for key in catalog.types[name].required}


def context(data: dict[str, Any], *, full: bool) -> dict[str, Any]:
    """What delivery.build_notification hands the templates; ``full``: a user name, links and the product's URL."""
    return {
        "data": data,
        "event": {"id": "evt-1", "type": "t", "source": "/s", "subject": None, "time": None},
        "user": {"id": "ana", "name": "Ana" if full else None, "email": None, "timezone": "UTC", "locale": None},
        "url": LINK if full else None,
        "unsubscribe_url": UNSUBSCRIBE if full else None,
        "product": PRODUCT if full else {"name": "Acme Arena", "url": None},
    }


class _BodyText(html.parser.HTMLParser):
    """The words a reader sees in an HTML email: the body's text, not the head, not attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.in_body = False
        self.parts: list[str] = []
        self.links: list[tuple[str, str]] = []  # (href, the link's text)
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_body = self.in_body or tag == "body"
        if tag == "a":
            self._href, self._text = dict(attrs).get("href") or "", ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, self._text))
            self._href = None

    def handle_data(self, data: str) -> None:
        if self.in_body:
            self.parts.append(data)
            if self._href is not None:
                self._text += data


def html_body(markup: str) -> _BodyText:
    parser = _BodyText()
    parser.feed(markup)
    return parser


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", re.sub(r"https?://\S+", " ", text)))


def build_email(catalog: Catalog, name: str, data: dict[str, Any], *, full: bool) -> EmailMessage:
    """The email the SMTP channel makes of one notification (no server needed to build it)."""
    rendered = Renderer(TEMPLATES).render(name, context(data, full=full))
    notification = Notification(
        delivery_id=7,
        user_id="ana",
        user=User(id="ana", email="ana@example.com", name="Ana" if full else None),
        event=parsed_event(name, data, id="evt-1"),
        kind=catalog.types[name],
        rendered=rendered,
        url=LINK if full else None,
        unsubscribe_url=UNSUBSCRIBE if full else None,
    )
    channel = SmtpChannel(Settings(product_name="Acme Arena"))
    return channel.build_message(notification, "ana@example.com", "Ana" if full else None)


def parts(message: EmailMessage) -> tuple[str, str]:
    text, markup = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and markup is not None
    return text.get_content(), markup.get_content()


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    full: bool  # every optional field, a user name, the links; else the required keys alone


def cases() -> list[Case]:
    from channels import channel_classes
    from dispatcher.core.catalog import load_catalog

    names = load_catalog(TEMPLATES / "catalog.toml", TEMPLATES, channels=channel_classes()).names()
    return [Case(name, full) for name in names for full in (False, True)]


def case_id(case: Case) -> str:
    return f"{case.name}-{'every-optional-field' if case.full else 'required-only'}"


def test_the_optional_table_names_every_key_the_templates_read_besides_the_required_ones(catalog: Catalog) -> None:
    # given the keys of data each type's templates mention
    for name in catalog.names():
        source = "".join((TEMPLATES / name / file).read_text() for file in ("subject.txt", "body.txt", "body.html"))
        read = set(re.findall(r"data\.get\(\"(\w+)\"\)", source)) | set(re.findall(r"data\.(\w+)", source))
        # then each is required or in OPTIONAL, so that the tests below render it both ways
        assert read - {"get"} - set(catalog.types[name].required) <= set(OPTIONAL.get(name, {})), name


@pytest.mark.parametrize("case", cases(), ids=case_id)
def test_the_text_and_html_parts_carry_the_same_words(catalog: Catalog, case: Case) -> None:
    # given
    data = required_data(catalog, case.name) | (OPTIONAL.get(case.name, {}) if case.full else {})
    # when
    text, markup = parts(build_email(catalog, case.name, data, full=case.full))
    # then
    seen = "".join(html_body(markup).parts)
    assert words(text) == words(seen), words(text) ^ words(seen)
    assert ("Hi Ana," in text and "Hi Ana," in seen) if case.full else ("Hi," in text and "Hi," in seen)
    assert "Acme Arena" in text and "Acme Arena" in seen and "Tidings" not in text + markup
    assert "None" not in text + seen


@pytest.mark.parametrize("case", cases(), ids=case_id)
def test_the_html_part_escapes_event_data_and_the_text_part_keeps_it(catalog: Catalog, case: Case) -> None:
    # given markup in every text value of the event
    data = required_data(catalog, case.name) | (OPTIONAL.get(case.name, {}) if case.full else {})
    # when
    text, markup = parts(build_email(catalog, case.name, data, full=case.full))
    # then
    assert "<i>" not in markup and "Tom &amp; &lt;i&gt;Jerry&lt;/i&gt;" in markup
    assert MARKUP in text
    if case.full:
        assert 'href="https://play.example/open?a=1&amp;b=2"' in markup


@pytest.mark.parametrize("name", sorted(set(OPTIONAL) | {"team.invite.sent", "tournament.bracket_ready"}))
def test_without_a_url_there_is_no_call_to_action_in_either_part(catalog: Catalog, name: str) -> None:
    # given the email with a link: its call to action is the link's text in HTML, "<label>: <url>" in text
    data = required_data(catalog, name) | OPTIONAL.get(name, {})
    text, markup = parts(build_email(catalog, name, data, full=True))
    [label] = [label for href, label in html_body(markup).links if href == LINK and name != "digest.daily"]
    assert f"{label}: {LINK}" in text
    # when the event has no url
    bare_text, bare_markup = parts(build_email(catalog, name, data, full=False))
    # then nothing invites the reader to open what is not linked
    for part in (bare_text, "".join(html_body(bare_markup).parts)):
        assert label not in part
        assert "Open the invitation" not in part and "Check who you play first" not in part
    assert html_body(bare_markup).links == [] and "http" not in bare_text


@pytest.mark.parametrize("placement", [2, "2", "2nd", " 2 "])
def test_a_placement_reads_2nd_whether_given_as_a_number_or_as_text(catalog: Catalog, placement: object) -> None:
    # given
    data = required_data(catalog, "tournament.completed") | {"placement": placement}
    # when
    text, markup = parts(build_email(catalog, "tournament.completed", data, full=True))
    # then
    assert "Your team finished 2nd." in text and "Your team finished 2nd." in markup
    assert "#" not in text + "".join(html_body(markup).parts)


def test_a_placement_given_as_words_is_shown_as_given(catalog: Catalog) -> None:
    data = required_data(catalog, "tournament.completed") | {"placement": "top 8"}
    text, markup = parts(build_email(catalog, "tournament.completed", data, full=False))
    assert "Your team finished top 8." in text and "Your team finished top 8." in markup


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"), (13, "13th"), (21, "21st")]
    + [(102, "102nd"), (111, "111th"), ("3", "3rd"), ("3rd", "3rd"), ("top 8", "top 8"), (True, "True")],
)
def test_ordinal_writes_english_ordinals_and_keeps_other_text(value: object, expected: str) -> None:
    assert ordinal(value) == expected


@pytest.mark.parametrize(("value", "expected"), [(2, "#2"), ("2", "#2"), ("2nd", "2nd"), ("#2", "#2")])
def test_rank_prefixes_numbers_only(value: object, expected: str) -> None:
    assert rank(value) == expected


def test_a_ranking_given_as_ordinals_never_reads_hash_2nd(catalog: Catalog) -> None:
    # given
    data = required_data(catalog, "ranking.changed") | {"old_rank": "5th", "new_rank": "2nd"}
    # when
    message = build_email(catalog, "ranking.changed", data, full=False)
    text, markup = parts(message)
    # then
    assert "#2nd" not in text + markup + str(message["Subject"])
    assert "moved from 5th to 2nd" in text


def test_a_team_entering_the_rankings_says_so_in_both_parts(catalog: Catalog) -> None:
    data = required_data(catalog, "ranking.changed") | {"old_rank": None}
    text, markup = parts(build_email(catalog, "ranking.changed", data, full=False))
    assert "enters the rankings at #2" in text and "enters the rankings at <strong>#2</strong>" in markup


def test_the_product_url_links_the_product_name_in_the_html_and_follows_it_in_the_text(catalog: Catalog) -> None:
    # when
    text, markup = parts(build_email(catalog, "match.completed", required_data(catalog, "match.completed"), full=True))
    # then
    assert "You received this because you use Acme Arena (https://acme.example)." in text
    assert ("https://acme.example", "Acme Arena") in html_body(markup).links
    assert f"Unsubscribe: {UNSUBSCRIBE}" in text and (UNSUBSCRIBE, "Unsubscribe") in html_body(markup).links


@pytest.mark.parametrize(
    ("mail_from", "product", "expected"),
    [
        (None, None, "Tidings <tidings@localhost>"),
        (None, "Acme Arena", "Acme Arena <tidings@localhost>"),
        ("noreply@acme.example", "Acme Arena", "Acme Arena <noreply@acme.example>"),
        ("Acme Alerts <noreply@acme.example>", "Acme Arena", "Acme Alerts <noreply@acme.example>"),
    ],
)
def test_the_from_header_shows_the_mail_from_name_else_the_product_name(
    catalog: Catalog, mail_from: str | None, product: str | None, expected: str
) -> None:
    # given
    env = {"TIDINGS_MAIL_FROM": mail_from, "TIDINGS_PRODUCT_NAME": product}
    settings = Settings.from_env({key: value for key, value in env.items() if value is not None})
    notification = Notification(
        delivery_id=1,
        user_id="ana",
        user=None,
        event=parsed_event("match.completed", {}, id="e"),
        kind=catalog.types["match.completed"],
        rendered=Renderer(TEMPLATES).render(
            "match.completed", context(required_data(catalog, "match.completed"), full=False)
        ),
        url=None,
    )
    # when
    message = SmtpChannel(settings).build_message(notification, "ana@example.com", None)
    # then
    assert message["From"] == expected


# --- Through ingest, the real channel and a real SMTP server -------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(set(OPTIONAL) | {"ranking.changed", "system.announcement", "match.started"}))
def test_an_email_sent_to_a_real_smtp_server_names_the_product_and_says_the_same_in_both_parts(
    sqlite_db: str, catalog: Catalog, smtp_server: SmtpServer, name: str
) -> None:
    # given a user who gets every type by email, and settings naming the product
    User.create(id="ana", email="ana@example.com", name="Ana", changed_at=dt.datetime(2026, 1, 1))
    Preference.create(user_id="ana", type="*", channel="email", enabled=True, changed_at=dt.datetime(2026, 1, 1))
    settings = Settings.from_env(
        {
            "TIDINGS_SMTP_URL": f"smtp://127.0.0.1:{smtp_server.port}",
            "TIDINGS_SMTP_TIMEOUT": "5",
            "TIDINGS_PRODUCT_NAME": "Acme Arena",
            "TIDINGS_PRODUCT_URL": "https://acme.example",
        }
    )
    data = {"recipients": ["ana"], **required_data(catalog, name), **OPTIONAL.get(name, {}), "url": LINK}
    [(delivery_id, _)] = ingest_event(parsed_event(name, data, source="/tests"), catalog, ["email"]).to_enqueue
    # when
    channel = SmtpChannel(settings)
    outcome = run_delivery(channel, delivery_id, message_id="m-1", settings=settings, catalog=catalog)
    channel.close()
    # then
    assert outcome.status == "sent"
    [message] = smtp_server.messages
    text, markup = parts(message)
    assert message["From"] == "Acme Arena <tidings@localhost>"
    assert words(text) == words("".join(html_body(markup).parts))
    assert "You received this because you use Acme Arena (https://acme.example)." in text
    assert ("https://acme.example", "Acme Arena") in html_body(markup).links
    assert "Tidings" not in text + markup and "#2nd" not in text + markup and MARKUP in text
