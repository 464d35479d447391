"""Server signing keys as published and exchanged (server-server API, "Retrieving
server keys": ``/_matrix/key/v2/server`` and notary ``/_matrix/key/v2/query``).

Building our own signed key response, and checking a remote one before any of
its keys is trusted: the response must name the server we asked about, every
key must be a well-formed ed25519 key, and the server must have signed the
response with one of the keys it lists (a response no listed key signed proves
nothing). A notary's answer must additionally carry the notary's signature under
a key we were configured to trust.

Pure: no I/O and no clock; callers pass ``now_ms``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .events.canonical import encode_base64
from .events.identifiers import is_valid_server_name
from .events.signing import (
    SignatureError,
    SigningKey,
    VerifyKey,
    decode_verify_key_base64,
    get_verify_key,
    key_id_of,
    sign_json,
    verify_signed_by,
)

__all__ = [
    "MAX_KEY_VALIDITY_MS",
    "KeyResponseError",
    "OldVerifyKey",
    "ServerKeys",
    "build_server_keys",
    "notary_sign",
    "parse_notary_response",
    "parse_server_keys",
]

# "Servers MUST use the lesser of this field and 7 days into the future."
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000

_KEY_ID = re.compile(r"ed25519:[a-zA-Z0-9_]+")


class KeyResponseError(Exception):
    """A key response is malformed, for the wrong server or not validly signed."""


@dataclass(frozen=True)
class OldVerifyKey:
    """A retired key: still valid for events sent before ``expired_ts``."""

    verify_key: VerifyKey
    expired_ts: int


@dataclass(frozen=True)
class ServerKeys:
    """A verified key response.

    ``valid_until_ts`` is already capped at seven days after the fetch, so
    callers can compare it directly against the times they check keys at.
    ``raw`` is the response as received (with its signatures), kept so a
    notary can re-serve it byte-for-byte meaningful to third parties.
    """

    server_name: str
    verify_keys: dict[str, VerifyKey]
    old_verify_keys: dict[str, OldVerifyKey]
    valid_until_ts: int
    raw: dict[str, Any] = field(repr=False)

    def validity_of(self, key_id: str) -> int | None:
        """Until when (ms) a key of this response may be used, None if absent."""
        if key_id in self.verify_keys:
            return self.valid_until_ts
        old = self.old_verify_keys.get(key_id)
        return old.expired_ts if old is not None else None


def build_server_keys(
    server_name: str,
    signing_keys: Sequence[SigningKey],
    valid_until_ts: int,
    old_verify_keys: Mapping[str, OldVerifyKey] | None = None,
) -> dict[str, Any]:
    """This server's ``/_matrix/key/v2/server`` response, signed by every current key.

    Signing with each listed key lets a peer that knows any one of them accept
    the response during a key rotation.
    """
    if not signing_keys:
        raise ValueError("a server needs at least one signing key")
    body: dict[str, Any] = {
        "server_name": server_name,
        "valid_until_ts": int(valid_until_ts),
        "verify_keys": {
            key_id_of(k): {"key": encode_base64(get_verify_key(k).encode())} for k in signing_keys
        },
        "old_verify_keys": {
            key_id: {"key": encode_base64(old.verify_key.encode()), "expired_ts": int(old.expired_ts)}
            for key_id, old in (old_verify_keys or {}).items()
        },
    }
    for k in signing_keys:
        body = sign_json(body, server_name, k)
    return body


def _int_field(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise KeyResponseError(f"Key response field {name!r} must be an integer")
    return value


def _decode_key(key_id: str, entry: Any) -> VerifyKey:
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise KeyResponseError(f"Unsupported or malformed key ID {key_id!r}")
    if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
        raise KeyResponseError(f"Key {key_id} has no 'key' string")
    try:
        verify_key = decode_verify_key_base64(key_id, entry["key"])
    except Exception as exc:  # bad base64, wrong length: PyNaCl raises several types
        raise KeyResponseError(f"Key {key_id} is not a valid ed25519 public key") from exc
    return verify_key


def parse_server_keys(
    response: Any, *, expected_server_name: str, now_ms: int
) -> ServerKeys:
    """Validate a server's own key response and return its keys.

    Checks the shape (required fields, key ID grammar, decodable ed25519
    keys), that ``server_name`` is the server we asked for (a server must not
    be able to answer for another), and the self-signature. ``valid_until_ts``
    is capped at ``now_ms`` + 7 days as the spec requires. Unknown-algorithm
    keys are refused rather than silently dropped so a broken peer is noticed.
    """
    if not isinstance(response, Mapping):
        raise KeyResponseError("Key response is not a JSON object")
    server_name = response.get("server_name")
    if not isinstance(server_name, str) or not is_valid_server_name(server_name):
        raise KeyResponseError("Key response has no valid 'server_name'")
    if server_name != expected_server_name:
        raise KeyResponseError(
            f"Key response is for {server_name!r}, not {expected_server_name!r}"
        )
    valid_until_ts = _int_field(response, "valid_until_ts")
    raw_keys = response.get("verify_keys")
    if not isinstance(raw_keys, Mapping):
        raise KeyResponseError("Key response has no 'verify_keys' object")
    verify_keys = {key_id: _decode_key(key_id, entry) for key_id, entry in raw_keys.items()}
    raw_old = response.get("old_verify_keys", {})
    if not isinstance(raw_old, Mapping):
        raise KeyResponseError("'old_verify_keys' must be an object")
    old: dict[str, OldVerifyKey] = {}
    for key_id, entry in raw_old.items():
        vk = _decode_key(key_id, entry)
        old[key_id] = OldVerifyKey(vk, _int_field(entry, "expired_ts"))
    if not isinstance(response.get("signatures"), Mapping):
        raise KeyResponseError("Key response has no 'signatures' object")
    try:
        verify_signed_by(response, server_name, verify_keys)
    except SignatureError as exc:
        raise KeyResponseError(f"Key response is not validly self-signed: {exc}") from exc
    return ServerKeys(
        server_name=server_name,
        verify_keys=verify_keys,
        old_verify_keys=old,
        valid_until_ts=min(valid_until_ts, now_ms + MAX_KEY_VALIDITY_MS),
        raw=dict(response),
    )


def notary_sign(
    response: Mapping[str, Any], notary_name: str, signing_key: SigningKey
) -> dict[str, Any]:
    """A stored key response re-served by us as a notary: the origin's own
    signatures plus ours. Other notaries' signatures are dropped, since we do
    not vouch for what they vouched for."""
    origin = response.get("server_name")
    signatures = response.get("signatures")
    kept = {}
    if isinstance(signatures, Mapping) and isinstance(origin, str) and origin in signatures:
        kept[origin] = signatures[origin]
    body = {k: v for k, v in response.items() if k != "signatures"}
    body["signatures"] = kept
    return sign_json(body, notary_name, signing_key)


def parse_notary_response(
    response: Any,
    *,
    notary_name: str,
    notary_keys: Mapping[str, VerifyKey],
    now_ms: int,
    expected_servers: Sequence[str] | None = None,
) -> list[ServerKeys]:
    """Validate a ``/_matrix/key/v2/query`` answer from a notary we trust.

    Each entry must be a valid self-signed key response (as
    :func:`parse_server_keys`) *and* carry the notary's signature with one of
    ``notary_keys``. Entries for servers we did not ask about are refused,
    and so is any invalid entry: a notary that returns garbage for one
    server is not trusted for the others in the same answer.
    """
    if not isinstance(response, Mapping) or not isinstance(response.get("server_keys"), list):
        raise KeyResponseError("Notary response has no 'server_keys' array")
    out: list[ServerKeys] = []
    for entry in response["server_keys"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("server_name"), str):
            raise KeyResponseError("Notary response entry has no 'server_name'")
        name = entry["server_name"]
        if expected_servers is not None and name not in expected_servers:
            raise KeyResponseError(f"Notary answered for {name!r}, which was not asked about")
        keys = parse_server_keys(entry, expected_server_name=name, now_ms=now_ms)
        try:
            verify_signed_by(entry, notary_name, notary_keys)
        except SignatureError as exc:
            raise KeyResponseError(f"Key response for {name} lacks the notary's signature: {exc}") from exc
        out.append(keys)
    return out
