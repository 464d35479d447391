"""Request authentication between servers: the ``X-Matrix`` Authorization header
(server-server API, "Request Authentication").

A request is authenticated by signing a JSON object made of its method, target
URI (path and query exactly as sent), origin, destination and parsed JSON body.
The receiver rebuilds that object from what it received and checks the
signature with the origin's published key, so a peer is identified by what it
can sign, never by the address it connects from.

A body carrying events of room versions 1-5 may hold floats (in the events),
which the spec's canonical JSON has no form for; such a body is signed and
checked in the form its events are hashed in (Python canonicaljson's, as Synapse
signs its requests), every other body in the spec's.

Pure: no I/O. Fetching the origin's key is the caller's job (a key ring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .events.canonical import (
    CanonicalJSONError,
    encode_canonical_json,
    encode_event_canonical_json,
    has_loose_numbers,
)
from .events.identifiers import is_valid_server_address
from .events.signing import (
    Encoder,
    SignatureError,
    SigningKey,
    VerifyKey,
    key_id_of,
    sign_json,
    verify_json_signature,
)

__all__ = [
    "RequestAuthError",
    "XMatrixAuth",
    "check_destination",
    "format_authorization_header",
    "parse_authorization_header",
    "request_json",
    "sign_request",
    "verify_request",
]

SCHEME = "X-Matrix"

# RFC 9110 section 5.6.2 tchar; colons are added because older servers send
# unquoted server names with ports ("origin=example.org:8448"), which the spec
# asks recipients to accept.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_UNQUOTED_VALUE = _TCHAR | frozenset(":")
_OWS = " \t"


class RequestAuthError(Exception):
    """The request is not (validly) signed; the receiver answers 401 M_UNAUTHORIZED."""


@dataclass(frozen=True)
class XMatrixAuth:
    """The parameters of one ``X-Matrix`` Authorization header."""

    origin: str
    key_id: str
    signature: str
    destination: str | None = None


def request_json(
    method: str, uri: str, origin: str, destination: str, content: Any = None
) -> dict[str, Any]:
    """The object that is signed for a request. ``content`` is left out when the
    request has no body (None), as the spec's example code does."""
    obj: dict[str, Any] = {
        "method": method.upper(),
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def format_authorization_header(auth: XMatrixAuth) -> str:
    """Serialise the way the spec asks senders to (one space, lower-case names,
    quoted values, no whitespace around commas) for the widest compatibility."""
    params = [f'origin="{auth.origin}"']
    if auth.destination is not None:
        params.append(f'destination="{auth.destination}"')
    params.append(f'key="{auth.key_id}"')
    params.append(f'sig="{auth.signature}"')
    return f"{SCHEME} " + ",".join(params)


def _request_form(content: Any) -> Encoder:
    """The canonical form a request with this body is signed in (module docstring)."""
    return encode_event_canonical_json if has_loose_numbers(content) else encode_canonical_json


def sign_request(
    *,
    method: str,
    uri: str,
    origin: str,
    destination: str,
    signing_key: SigningKey,
    content: Any = None,
) -> str:
    """The ``Authorization`` header value for an outbound request.

    ``uri`` is the request target as it goes on the wire: the path starting with
    ``/_matrix/`` plus ``?query`` if any, percent-encoding included.
    """
    signed = sign_json(
        request_json(method, uri, origin, destination, content), origin, signing_key, encode=_request_form(content)
    )
    key_id = key_id_of(signing_key)
    return format_authorization_header(
        XMatrixAuth(
            origin=origin,
            destination=destination,
            key_id=key_id,
            signature=signed["signatures"][origin][key_id],
        )
    )


def _parse_params(text: str) -> list[tuple[str, str]]:
    """Parse ``name=value`` pairs separated by commas (RFC 9110 auth-param list)."""
    params: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _OWS:
            i += 1
        start = i
        while i < n and text[i] in _TCHAR:
            i += 1
        name = text[start:i]
        if not name:
            raise RequestAuthError("Malformed X-Matrix header: expected a parameter name")
        while i < n and text[i] in _OWS:
            i += 1
        if i >= n or text[i] != "=":
            raise RequestAuthError(f"Malformed X-Matrix header: no value for {name!r}")
        i += 1
        while i < n and text[i] in _OWS:
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise RequestAuthError("Malformed X-Matrix header: unterminated quoted value")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise RequestAuthError("Malformed X-Matrix header: dangling backslash")
                    chars.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] in _UNQUOTED_VALUE:
                i += 1
            value = text[start:i]
            if not value:
                raise RequestAuthError(f"Malformed X-Matrix header: empty value for {name!r}")
        params.append((name.lower(), value))
        while i < n and text[i] in _OWS:
            i += 1
        if i >= n:
            return params
        if text[i] != ",":
            raise RequestAuthError("Malformed X-Matrix header: expected ',' between parameters")
        i += 1


def parse_authorization_header(value: str) -> XMatrixAuth:
    """Parse an ``Authorization: X-Matrix ...`` header value.

    Accepts every form the spec allows receivers to see: any case for the
    scheme and parameter names, any order, quoted or bare values (bare values
    may hold colons), backslash escapes in quoted values, spaces and tabs
    around commas, unknown parameters (ignored). A repeated parameter is
    refused because it would be ambiguous which one was meant.
    """
    if not isinstance(value, str):
        raise RequestAuthError("Missing Authorization header")
    scheme, sep, rest = value.partition(" ")
    if scheme.lower() != SCHEME.lower() or not sep:
        raise RequestAuthError("Authorization header is not of the X-Matrix scheme")
    found: dict[str, str] = {}
    for name, val in _parse_params(rest.lstrip(" ")):
        if name in found and name in ("origin", "destination", "key", "sig"):
            raise RequestAuthError(f"Malformed X-Matrix header: {name!r} given twice")
        found[name] = val
    for required in ("origin", "key", "sig"):
        if required not in found:
            raise RequestAuthError(f"X-Matrix header lacks the {required!r} parameter")
    # Server names that could be connected to: a port beyond 65535 would otherwise
    # reach the key fetch (and a socket) as a 500 instead of this 401.
    origin = found["origin"]
    if not is_valid_server_address(origin):
        raise RequestAuthError("X-Matrix origin is not a valid server name")
    destination = found.get("destination")
    if destination is not None and not is_valid_server_address(destination):
        raise RequestAuthError("X-Matrix destination is not a valid server name")
    key_id = found["key"]
    if not key_id.startswith("ed25519:") or len(key_id) == len("ed25519:"):
        raise RequestAuthError("X-Matrix key is not an ed25519 key ID")
    return XMatrixAuth(origin=origin, key_id=key_id, signature=found["sig"], destination=destination)


def check_destination(auth: XMatrixAuth, our_server_name: str) -> None:
    """Refuse a request meant for another server (a replayed or misrouted one).

    An absent destination is accepted for older senders, as the spec requires.
    """
    if auth.destination is not None and auth.destination != our_server_name:
        raise RequestAuthError("X-Matrix destination is not this server")


def verify_request(
    auth: XMatrixAuth,
    *,
    method: str,
    uri: str,
    our_server_name: str,
    verify_key: VerifyKey,
    content: Any = None,
) -> None:
    """Check an inbound request's signature; raise :class:`RequestAuthError` if it fails.

    ``uri`` is the raw request target as received and ``content`` the parsed
    JSON body (None when there is none). The signed object names the
    destination, so it is rebuilt with our own name: a request signed for
    another server fails here even if the header omits ``destination``.
    """
    check_destination(auth, our_server_name)
    obj = request_json(method, uri, auth.origin, our_server_name, content)
    obj["signatures"] = {auth.origin: {auth.key_id: auth.signature}}
    try:
        verify_json_signature(obj, auth.origin, auth.key_id, verify_key, encode=_request_form(content))
    except (SignatureError, CanonicalJSONError) as exc:
        raise RequestAuthError("Invalid X-Matrix signature") from exc

