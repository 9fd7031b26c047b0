"""Discord's message limits and markdown: pure functions, no I/O.

Everything is cut to fit with an ellipsis instead of failing, and text from
events is escaped so that it cannot add links or formatting of its own.
"""

from __future__ import annotations

import re
from typing import Any

# Discord's limits, in characters (code points, as Python counts them).
CONTENT_LIMIT = 2000
EMBEDS_LIMIT = 10
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
AUTHOR_LIMIT = 256
EMBEDS_TOTAL_LIMIT = 6000  # title, description, fields, footer and author of all embeds together
ELLIPSIS = "…"


def truncate(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else cut to fit, ending with "…"."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1].rstrip() + ELLIPSIS


def embed_length(embed: dict[str, Any]) -> int:
    """The characters of ``embed`` that count towards Discord's 6000 in total."""
    fields = embed.get("fields") or []
    return (
        len(embed.get("title", ""))
        + len(embed.get("description", ""))
        + len((embed.get("footer") or {}).get("text", ""))
        + len((embed.get("author") or {}).get("name", ""))
        + sum(len(field.get("name", "")) + len(field.get("value", "")) for field in fields)
    )


def fit_embed(embed: dict[str, Any], budget: int = EMBEDS_TOTAL_LIMIT) -> dict[str, Any]:
    """A copy of ``embed`` within every limit and within ``budget`` characters in total.

    Each part is cut to its own limit; then, if the whole is still too long, the
    description gives way first, then fields are dropped from the end, then the footer.
    """
    fitted = dict(embed)
    for key, limit in (("title", TITLE_LIMIT), ("description", DESCRIPTION_LIMIT)):
        if key in fitted:
            fitted[key] = truncate(fitted[key], limit)
    for key, part, limit in (("footer", "text", FOOTER_LIMIT), ("author", "name", AUTHOR_LIMIT)):
        if key in fitted:
            fitted[key] = {**fitted[key], part: truncate(fitted[key].get(part, ""), limit)}
    if "fields" in fitted:
        fitted["fields"] = [
            {
                **field,
                "name": truncate(field["name"], FIELD_NAME_LIMIT),
                "value": truncate(field["value"], FIELD_VALUE_LIMIT),
            }
            for field in fitted["fields"][:FIELDS_LIMIT]
        ]
    excess = embed_length(fitted) - budget
    if excess > 0 and fitted.get("description"):
        fitted["description"] = truncate(fitted["description"], len(fitted["description"]) - excess)
    while embed_length(fitted) > budget and fitted.get("fields"):
        fitted["fields"] = fitted["fields"][:-1]
    excess = embed_length(fitted) - budget
    if excess > 0 and "footer" in fitted:
        text = fitted["footer"]["text"]
        fitted["footer"] = {**fitted["footer"], "text": truncate(text, len(text) - excess)}
    excess = embed_length(fitted) - budget
    if excess > 0 and "title" in fitted:  # only an author name of 256 is left besides
        fitted["title"] = truncate(fitted["title"], len(fitted["title"]) - excess)
    return fitted


def fit_message(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of an execute-webhook payload within Discord's limits: content, 10 embeds, 6000 in all."""
    fitted = dict(payload)
    if "content" in fitted:
        fitted["content"] = truncate(fitted["content"], CONTENT_LIMIT)
    if "embeds" in fitted:
        budget, embeds = EMBEDS_TOTAL_LIMIT, []
        for embed in fitted["embeds"][:EMBEDS_LIMIT]:
            embeds.append(fit_embed(embed, budget))
            budget -= embed_length(embeds[-1])
        fitted["embeds"] = embeds
    return fitted


# --- Markdown ------------------------------------------------------------------------------------

_URL = re.compile(r"(https?://\S+)")
_INLINE = re.compile(r"([\\*_~`|\[\]()<])")
_LINE_START = re.compile(r"^(\s*)([#>-])", re.MULTILINE)


def escape_markdown(text: str) -> str:
    """``text`` shown as written: Discord's markdown escaped, URLs left whole so they stay links."""
    parts = _URL.split(text)
    for i in range(0, len(parts), 2):  # even parts are not URLs
        parts[i] = _LINE_START.sub(r"\1\\\2", _INLINE.sub(r"\\\1", parts[i]))
    return "".join(parts)


def escape_context(value: Any) -> Any:
    """A template context with every string escaped, for discord.md (as HTML templates are autoescaped)."""
    if isinstance(value, str):
        return escape_markdown(value)
    if isinstance(value, dict):
        return {key: escape_context(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_context(item) for item in value]
    return value
