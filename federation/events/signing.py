"""Signing JSON and events (appendices "Signing JSON", server-server "Signing Events").

Signing keys are PyNaCl key objects carrying ``alg`` and ``version`` (as
``signedjson``'s do), so the key ID (``ed25519:abc``) travels with the key. Verify
keys are passed as a mapping of key ID to key because a server publishes
several and a signature names the one it used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

import nacl.exceptions
import nacl.signing

from .canonical import (
    decode_base64,
    encode_base64,
    encode_canonical_json,
    encode_event_canonical_json,
    json_copy,
)
from .hashing import compute_content_hash, pdu_json
from .identifiers import domain_of
from .redaction import redact_event
from .room_versions import RoomVersion, get_room_version

__all__ = [
    "SignatureError",
    "SigningKey",
    "add_hashes_and_signature",
    "decode_signing_key_base64",
    "decode_verify_key_base64",
    "decode_verify_key_bytes",
    "encode_signing_key_base64",
    "encode_verify_key_base64",
    "generate_signing_key",
    "get_verify_key",
    "hash_and_sign_event",
    "key_id_of",
    "servers_required_to_sign",
    "sign_event",
    "sign_json",
    "signing_key_from_seed",
    "verify_event_signatures",
    "verify_json_signature",
    "verify_signed_by",
]

VerifyKey = nacl.signing.VerifyKey

# Keys are made here from PyNaCl rather than with ``signedjson``, whose package reads its
# own version from the installed distributions when imported (importlib.metadata, about
# 0.8 MB resident for the rest of the process).
ED25519 = "ed25519"


class SigningKey(Protocol):
    """A PyNaCl ed25519 signing key carrying its key ID's parts (``alg:version``)."""

    alg: str
    version: str

    @property
    def verify_key(self) -> nacl.signing.VerifyKey: ...

    def sign(self, message: bytes) -> nacl.signing.SignedMessage: ...

    def encode(self) -> bytes: ...


def _with_id(key: Any, alg: str, version: str) -> Any:
    key.alg = alg
    key.version = version
    return key


def generate_signing_key(version: str) -> SigningKey:
    """A new random ed25519 signing key named ``ed25519:<version>``."""
    return cast(SigningKey, _with_id(nacl.signing.SigningKey.generate(), ED25519, version))


def decode_signing_key_base64(algorithm: str, version: str, key_base64: str) -> SigningKey:
    """A signing key from its seed in base64 (the key file's form); ValueError for an
    algorithm other than ed25519."""
    if algorithm != ED25519:
        raise ValueError(f"Unsupported algorithm {algorithm}")
    return cast(SigningKey, _with_id(nacl.signing.SigningKey(decode_base64(key_base64)), ED25519, version))


def encode_signing_key_base64(key: SigningKey) -> str:
    """The key's seed in unpadded base64."""
    return encode_base64(key.encode())


def get_verify_key(signing_key: SigningKey) -> VerifyKey:
    """The public half, under the same key ID."""
    return cast(VerifyKey, _with_id(signing_key.verify_key, signing_key.alg, signing_key.version))


def encode_verify_key_base64(key: VerifyKey) -> str:
    """A verify key as published (unpadded base64)."""
    return encode_base64(key.encode())


def decode_verify_key_bytes(key_id: str, key_bytes: bytes) -> VerifyKey:
    """A verify key from its raw bytes under ``key_id``; ValueError unless the ID names
    ed25519."""
    alg, sep, version = key_id.partition(":")
    if alg != ED25519 or not sep:
        raise ValueError(f"Unsupported algorithm {key_id!r}")
    return cast(VerifyKey, _with_id(nacl.signing.VerifyKey(key_bytes), ED25519, version))


class SignatureError(Exception):
    """A required signature is missing, malformed or does not verify."""


def key_id_of(signing_key: SigningKey) -> str:
    return f"{signing_key.alg}:{signing_key.version}"


def signing_key_from_seed(seed: bytes, version: str) -> SigningKey:
    """Build a signing key from a raw 32-byte ed25519 seed (as in the appendix vectors)."""
    return decode_signing_key_base64("ed25519", version, encode_base64(seed))


def decode_verify_key_base64(key_id: str, key_base64: str) -> VerifyKey:
    """A verify key from its published base64 form, under its ``alg:version`` key ID."""
    return decode_verify_key_bytes(key_id, decode_base64(key_base64))


Encoder = Callable[[Any], bytes]


def _signable_bytes(obj: Mapping[str, Any], encode: Encoder) -> bytes:
    return encode({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def sign_json(
    obj: Mapping[str, Any], server_name: str, signing_key: SigningKey, *, encode: Encoder = encode_canonical_json
) -> dict[str, Any]:
    """Return a copy of ``obj`` with this server's signature added.

    Existing signatures (ours under other key IDs, or other servers') are
    preserved, since objects such as key responses and invites are
    co-signed. ``encode`` is the canonical form signed: events are signed over
    ``encode_event_canonical_json`` (room versions 1-5 may hold floats).
    """
    signed: dict[str, Any] = json_copy(dict(obj))
    signature = signing_key.sign(_signable_bytes(obj, encode)).signature
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        signatures = {}
    signatures.setdefault(server_name, {})[key_id_of(signing_key)] = encode_base64(signature)
    signed["signatures"] = signatures
    return signed


def verify_json_signature(
    obj: Mapping[str, Any], server_name: str, key_id: str, verify_key: VerifyKey,
    *, encode: Encoder = encode_canonical_json,
) -> None:
    """Check one specific signature; raise :class:`SignatureError` unless it verifies."""
    signatures = obj.get("signatures")
    server_sigs = signatures.get(server_name) if isinstance(signatures, Mapping) else None
    if not isinstance(server_sigs, Mapping) or key_id not in server_sigs:
        raise SignatureError(f"Missing signature for {server_name} {key_id}")
    encoded = server_sigs[key_id]
    try:
        signature = decode_base64(encoded)
    except ValueError as exc:
        raise SignatureError(f"Invalid base64 in signature {server_name} {key_id}") from exc
    try:
        verify_key.verify(_signable_bytes(obj, encode), signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as exc:
        raise SignatureError(f"Invalid signature for {server_name} {key_id}") from exc


def verify_signed_by(
    obj: Mapping[str, Any], server_name: str, verify_keys: Mapping[str, VerifyKey],
    *, encode: Encoder = encode_canonical_json,
) -> None:
    """Check that ``server_name`` signed ``obj`` with at least one of ``verify_keys``.

    Follows "Checking for a Signature": signatures under unknown algorithms
    or key IDs are ignored, every remaining one must verify, and at least one
    must remain.
    """
    signatures = obj.get("signatures")
    server_sigs = signatures.get(server_name) if isinstance(signatures, Mapping) else None
    if not isinstance(server_sigs, Mapping) or not server_sigs:
        raise SignatureError(f"Not signed by {server_name}")
    checked = 0
    for key_id in server_sigs:
        if not key_id.startswith("ed25519:") or key_id not in verify_keys:
            continue
        verify_json_signature(obj, server_name, key_id, verify_keys[key_id], encode=encode)
        checked += 1
    if checked == 0:
        raise SignatureError(f"No signature from {server_name} with a known key")


def add_hashes_and_signature(
    event: Mapping[str, Any],
    room_version: str | RoomVersion,
    server_name: str,
    signing_key: SigningKey,
) -> dict[str, Any]:
    """Compute ``hashes.sha256`` then sign the redacted form; returns a new event.

    The signature covers only the redacted event (plus the content hash) so
    that it stays verifiable after redaction; the content hash is what ties
    the signature to the full content.
    """
    return hash_and_sign_event(json_copy(dict(event)), room_version, server_name, signing_key)[0]


def hash_and_sign_event(
    event: dict[str, Any],
    room_version: str | RoomVersion,
    server_name: str,
    signing_key: SigningKey,
    *,
    encode: Encoder = encode_event_canonical_json,
) -> tuple[dict[str, Any], bytes]:
    """``add_hashes_and_signature`` on an event the caller owns (it is changed in
    place, not copied), also returning the bytes signed: the redacted event without
    its signatures, which is exactly what its reference hash is taken over, so a
    builder names the event without redacting and encoding it a second time.
    ``encode``: the events' canonical form, ``encode_plain_json`` for an event the
    caller found plain (``is_plain_event_json``)."""
    rv = get_room_version(room_version)
    event["hashes"] = {"sha256": encode_base64(compute_content_hash(event, rv, encode=encode))}
    redacted = redact_event(pdu_json(event, rv), rv)
    signable = _signable_bytes(redacted, encode)
    existing = redacted.get("signatures")
    signatures: dict[str, Any] = json_copy(existing) if isinstance(existing, dict) else {}
    signature = signing_key.sign(signable).signature
    signatures.setdefault(server_name, {})[key_id_of(signing_key)] = encode_base64(signature)
    event["signatures"] = signatures
    return event, signable


def sign_event(
    event: Mapping[str, Any],
    room_version: str | RoomVersion,
    server_name: str,
    signing_key: SigningKey,
) -> dict[str, Any]:
    """Add another server's signature to an event that already has its hashes.

    Used when co-signing (restricted joins, invites); re-hashing there would
    be wrong if we only hold the redacted form.
    """
    rv = get_room_version(room_version)
    out: dict[str, Any] = json_copy(dict(event))
    redacted = redact_event(pdu_json(out, rv), rv)
    signed = sign_json(redacted, server_name, signing_key, encode=encode_event_canonical_json)
    out["signatures"] = signed["signatures"]
    return out


def servers_required_to_sign(
    event: Mapping[str, Any], room_version: str | RoomVersion
) -> set[str]:
    """Which servers' signatures an event must carry to be accepted.

    The sender's server always, except for third-party-invite membership
    events (the invited user's server may create those on the inviter's
    behalf; the auth rules check the identity server's signature instead).
    Restricted joins also need the authorising user's server, which is how
    auth rule "join_authorised_via_users_server ... validly signed" is
    enforced: the receipt pipeline checks these signatures before auth runs.
    """
    rv = get_room_version(room_version)
    required: set[str] = set()
    content = event.get("content")
    content = content if isinstance(content, Mapping) else {}
    membership = content.get("membership")
    is_member = event.get("type") == "m.room.member"
    if not (is_member and membership == "invite" and "third_party_invite" in content):
        required.add(domain_of(event["sender"]))
    if rv.event_id_in_pdu:
        # v1/v2: the server that named the event vouches for it too.
        try:
            required.add(domain_of(str(event.get("event_id"))))
        except ValueError:
            pass
    authoriser = content.get("join_authorised_via_users_server")
    if rv.restricted_join_rule and is_member and membership == "join" and isinstance(authoriser, str):
        try:
            required.add(domain_of(authoriser))
        except ValueError:
            # Leave a malformed authoriser to the auth rules, which reject it.
            pass
    return required


def verify_event_signatures(
    event: Mapping[str, Any],
    room_version: str | RoomVersion,
    verify_keys: Mapping[str, Mapping[str, VerifyKey]],
) -> None:
    """Verify the signatures of every server in :func:`servers_required_to_sign`.

    ``verify_keys`` maps server name to ``{key_id: verify_key}`` holding the
    keys valid at the event's ``origin_server_ts`` (choosing those is the
    key store's job). Verification is done on the redacted event, so it
    succeeds for both full and redacted copies.
    """
    rv = get_room_version(room_version)
    redacted = redact_event(pdu_json(event, rv), rv)
    for server in sorted(servers_required_to_sign(event, rv)):
        keys = verify_keys.get(server)
        if not keys:
            raise SignatureError(f"No known keys for {server}")
        verify_signed_by(redacted, server, keys, encode=encode_event_canonical_json)
