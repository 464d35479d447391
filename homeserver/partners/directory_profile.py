"""An organization's directory profile: the one validator every side uses.

The same rules run where a profile is written (the organization's config, at
startup), where it is received (the directory, on a signed publish) and where a
directory's answer is read back (the searching server, which trusts no
directory's output more than any other remote input). So a profile one side
accepts is a profile every side accepts, and a hostile directory cannot push
oversized or mistyped entries into a client's search results.

Errors are ``MatrixError``: a wrong type is ``M_BAD_JSON``, a value that breaks a
grammar (user ID, room ID, URL, server name) is ``M_INVALID_PARAM``, a field
over its size limit is ``M_TOO_LARGE``.
"""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import urlsplit

from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.identifiers import is_valid_server_name, parse_user_id

# Limits, in characters (after normalisation) or items. Generous for a real
# organization, small enough that a directory of thousands stays cheap to serve.
MAX_NAME = 128
MAX_DESCRIPTION = 2000
MAX_SPECIALTIES = 20
MAX_SPECIALTY = 64
MAX_LOCATION = 128
MAX_WEBSITE = 512
MAX_CONTACTS = 20
MAX_ROOMS = 50
MAX_ROOM_REF_BYTES = 255
MAX_PARTNERS = 1000
# A whole publish body; far above what the limits above allow, far below the
# federation listener's general body limit.
MAX_BODY_BYTES = 256 * 1024

PROFILE_FIELDS = (
    "name", "description", "specialties", "location", "website", "contacts", "rooms", "partners",
)


def too_large(message: str) -> MatrixError:
    return MatrixError(400, "M_TOO_LARGE", message)


def _clean_text(value: str) -> str:
    """NFC, control characters (but newlines in descriptions) dropped, edges trimmed:
    what a directory shows should not smuggle terminal escapes or zero-width tricks."""
    value = unicodedata.normalize("NFC", value)
    return "".join(
        ch for ch in value if ch == "\n" or unicodedata.category(ch)[0] != "C"
    ).strip()


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool = False,
          multiline: bool = False) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing required field '{name}'")
        return ""
    if not isinstance(value, str):
        raise bad_json(f"Field '{name}' must be a string")
    if len(value) > limit * 4:  # reject before the (linear, but not free) clean-up
        raise too_large(f"Field '{name}' is longer than {limit} characters")
    value = _clean_text(value)
    if not multiline:
        value = " ".join(value.split())
    if len(value) > limit:
        raise too_large(f"Field '{name}' is longer than {limit} characters")
    if required and not value:
        raise invalid_param(f"Field '{name}' must not be empty")
    return value


def _string_list(body: dict[str, Any], name: str, max_items: int) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_json(f"Field '{name}' must be an array")
    if len(value) > max_items:
        raise too_large(f"Field '{name}' has more than {max_items} entries")
    for item in value:
        if not isinstance(item, str):
            raise bad_json(f"Field '{name}' must be an array of strings")
    return list(value)


def normalize_specialty(value: str) -> str:
    """The form specialties are matched in: case-folded, single-spaced."""
    return " ".join(_clean_text(value).casefold().split())


def _specialties(body: dict[str, Any]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for raw in _string_list(body, "specialties", MAX_SPECIALTIES):
        if len(raw) > MAX_SPECIALTY * 4:
            raise too_large(f"A specialty is longer than {MAX_SPECIALTY} characters")
        shown = " ".join(_clean_text(raw).split())
        if not shown:
            raise invalid_param("Specialties must not be empty")
        if len(shown) > MAX_SPECIALTY:
            raise too_large(f"A specialty is longer than {MAX_SPECIALTY} characters")
        key = normalize_specialty(shown)
        if key not in seen:
            seen.add(key)
            out.append(shown)
    return out


def _website(body: dict[str, Any]) -> str | None:
    value = _text(body, "website", MAX_WEBSITE)
    if not value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        raise invalid_param("Field 'website' must be an http(s) URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or " " in value:
        raise invalid_param("Field 'website' must be an http(s) URL")
    return value


def _contacts(body: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for user_id in _string_list(body, "contacts", MAX_CONTACTS):
        if parse_user_id(user_id) is None:
            raise invalid_param(f"Contact {user_id[:80]!r} is not a Matrix user ID")
        if user_id not in out:
            out.append(user_id)
    return out


def _is_room_ref(ref: str) -> bool:
    if len(ref.encode("utf-8")) > MAX_ROOM_REF_BYTES or ref[:1] not in ("!", "#"):
        return False
    local, sep, server = ref[1:].partition(":")
    if not local or any(ch.isspace() or ord(ch) < 0x20 for ch in local):
        return False
    if not sep:
        # Room IDs of room version 12 have no server part; aliases always do.
        return ref[0] == "!"
    return is_valid_server_name(server)


def _rooms(body: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for ref in _string_list(body, "rooms", MAX_ROOMS):
        if not _is_room_ref(ref):
            raise invalid_param(f"Room {ref[:80]!r} is not a room ID or alias")
        if ref not in out:
            out.append(ref)
    return out


def _partners(body: dict[str, Any]) -> list[str] | None:
    if body.get("partners") is None:
        return None
    out: list[str] = []
    for name in _string_list(body, "partners", MAX_PARTNERS):
        if not is_valid_server_name(name):
            raise invalid_param(f"Partner {name[:80]!r} is not a server name")
        if name not in out:
            out.append(name)
    return sorted(out)


def validate_profile(body: Any) -> dict[str, Any]:
    """The validated, normalised profile of a publish body; raises MatrixError.

    Unknown fields are dropped rather than refused, so a newer publisher can add
    fields without older directories refusing its whole profile; nothing that was
    not validated is ever stored or served.
    """
    if not isinstance(body, dict):
        raise bad_json("Profile must be a JSON object")
    profile: dict[str, Any] = {
        "name": _text(body, "name", MAX_NAME, required=True),
        "description": _text(body, "description", MAX_DESCRIPTION, multiline=True),
        "specialties": _specialties(body),
        "location": _text(body, "location", MAX_LOCATION),
        "website": _website(body),
        "contacts": _contacts(body),
        "rooms": _rooms(body),
    }
    partners = _partners(body)
    if partners is not None:
        profile["partners"] = partners
    return profile
