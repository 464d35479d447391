"""Real ed25519 keys for E2EE tests, signed as the spec's "Signing JSON" says."""

from __future__ import annotations

import copy
from typing import Any

from nacl.signing import SigningKey
from signedjson.key import generate_signing_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from tests.conftest import Api


def new_key(name: str) -> Any:
    """An ed25519 signing key whose key ID is "ed25519:<name>"."""
    return generate_signing_key(name)


def public(key: Any) -> str:
    return encode_base64(key.verify_key.encode())


def signed(obj: dict[str, Any], user_id: str, key: Any) -> dict[str, Any]:
    return sign_json(copy.deepcopy(obj), user_id, key)


def device_keys(user_id: str, device_id: str, key: Any, *, sign_with: Any = None) -> dict[str, Any]:
    obj = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            f"curve25519:{device_id}": encode_base64(SigningKey.generate().verify_key.encode()),
            f"ed25519:{device_id}": public(key),
        },
    }
    return signed(obj, user_id, sign_with if sign_with is not None else key)


def otk(user_id: str, key: Any, n: int, *, fallback: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": encode_base64(SigningKey.generate().verify_key.encode())}
    if fallback:
        obj["fallback"] = True
    return signed(obj, user_id, key)


async def login_device(api: Api, name: str) -> tuple[str, str, str]:
    """(user ID, access token, device ID) of a new user."""
    reg = await api.register(name)
    return reg["user_id"], reg["access_token"], reg["device_id"]


def cs_key(user_id: str, usage: str, key: Any) -> dict[str, Any]:
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public(key)}": public(key)}}


def named(key: Any) -> Any:
    """The key renamed so that its key ID is ed25519:<public key>, as cross-signing keys are."""
    key.version = public(key)
    return key


def cs_keys(user_id: str) -> tuple[dict[str, Any], dict[str, Any], Any, Any, Any]:
    msk, ssk, usk = named(new_key("m")), named(new_key("s")), named(new_key("u"))
    body = {
        "master_key": cs_key(user_id, "master", msk),
        "self_signing_key": signed(cs_key(user_id, "self_signing", ssk), user_id, msk),
        "user_signing_key": signed(cs_key(user_id, "user_signing", usk), user_id, msk),
    }
    return body, body["master_key"], msk, ssk, usk
