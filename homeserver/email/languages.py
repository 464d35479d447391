"""Language tags as mails and their pages choose them (see `homeserver.email.mailer`):
apart from the mailer, so that the routes and the config check read them without
loading it (a server without e-mail never builds one)."""

from __future__ import annotations

import re

_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*")


def language_tag(value: object) -> str | None:
    """A BCP 47-ish tag as a template directory name ("de-DE" and "de_de" are "de-de"),
    or None for anything else: the value comes from users, and must never name a path."""
    if not isinstance(value, str):
        return None
    tag = value.strip().lower().replace("_", "-")
    return tag if len(tag) <= 35 and _LANGUAGE.fullmatch(tag) else None


def accepted_languages(header: str | None, limit: int = 5) -> list[str]:
    """The language tags of an Accept-Language header (RFC 9110), most wanted first
    (by q-value, then order), at most `limit` and only well-formed ones; "*" and
    tags refused with q=0 are left out."""
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate((header or "").split(",")[:20]):
        tag, _, params = item.partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        clean = language_tag(tag)
        if clean is not None and 0 < q <= 1:
            weighted.append((-q, index, clean))
    return [tag for _, _, tag in sorted(weighted)][:limit]
