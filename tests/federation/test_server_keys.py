"""Server key responses: building ours, verifying others' and notaries'."""

from __future__ import annotations

import copy

import pytest

from federation.events.canonical import encode_base64
from federation.events.signing import generate_signing_key, get_verify_key, sign_json
from federation.server_keys import (
    MAX_KEY_VALIDITY_MS,
    KeyResponseError,
    OldVerifyKey,
    build_server_keys,
    notary_sign,
    parse_notary_response,
    parse_server_keys,
)

NOW = 1_700_000_000_000
KEY = generate_signing_key("a1")
OLD = generate_signing_key("old")
NOTARY_KEY = generate_signing_key("n1")


def _response(server: str = "remote.example", valid_until: int = NOW + 3_600_000) -> dict:
    return build_server_keys(
        server, [KEY], valid_until,
        {"ed25519:old": OldVerifyKey(get_verify_key(OLD), NOW - 1000)},
    )


def test_build_and_parse_round_trip() -> None:
    resp = _response()
    assert set(resp) == {"server_name", "valid_until_ts", "verify_keys", "old_verify_keys", "signatures"}
    assert resp["verify_keys"] == {"ed25519:a1": {"key": encode_base64(get_verify_key(KEY).encode())}}
    assert resp["old_verify_keys"]["ed25519:old"]["expired_ts"] == NOW - 1000
    keys = parse_server_keys(resp, expected_server_name="remote.example", now_ms=NOW)
    assert keys.verify_keys["ed25519:a1"].encode() == get_verify_key(KEY).encode()
    assert keys.valid_until_ts == NOW + 3_600_000
    assert keys.validity_of("ed25519:a1") == NOW + 3_600_000
    # An expired (old) key is only valid until its expired_ts.
    assert keys.validity_of("ed25519:old") == NOW - 1000
    assert keys.old_verify_keys["ed25519:old"].verify_key.encode() == get_verify_key(OLD).encode()
    assert keys.validity_of("ed25519:none") is None


def test_validity_is_capped_at_seven_days() -> None:
    resp = _response(valid_until=NOW + 365 * 86_400_000)
    keys = parse_server_keys(resp, expected_server_name="remote.example", now_ms=NOW)
    assert keys.valid_until_ts == NOW + MAX_KEY_VALIDITY_MS


def test_already_expired_response_keeps_its_past_validity() -> None:
    resp = _response(valid_until=NOW - 5)
    keys = parse_server_keys(resp, expected_server_name="remote.example", now_ms=NOW)
    assert keys.valid_until_ts == NOW - 5  # the key ring decides it is too old


def test_wrong_server_name_is_rejected() -> None:
    with pytest.raises(KeyResponseError, match="not 'other.example'"):
        parse_server_keys(_response(), expected_server_name="other.example", now_ms=NOW)


def _mutate(fn) -> dict:  # noqa: ANN001
    resp = copy.deepcopy(_response())
    fn(resp)
    return resp


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        _mutate(lambda r: r.pop("signatures")),
        _mutate(lambda r: r.pop("valid_until_ts")),
        _mutate(lambda r: r.update(valid_until_ts="soon")),
        _mutate(lambda r: r.pop("verify_keys")),
        _mutate(lambda r: r.update(server_name=5)),
        # tampered after signing
        _mutate(lambda r: r.update(valid_until_ts=r["valid_until_ts"] + 1)),
        # a key the response was not signed with replaces the real one
        _mutate(lambda r: r["verify_keys"].update(
            {"ed25519:a1": {"key": encode_base64(get_verify_key(OLD).encode())}})),
        _mutate(lambda r: r["verify_keys"].update({"ed25519:bad": {"key": "!!"}})),
        _mutate(lambda r: r["verify_keys"].update({"ed25519:short": {"key": "AAAA"}})),
        _mutate(lambda r: r["verify_keys"].update({"rsa:x": {"key": "AAAA"}})),
        _mutate(lambda r: r["verify_keys"].update({"ed25519:bad-char": {"key": "AAAA"}})),
        _mutate(lambda r: r["old_verify_keys"]["ed25519:old"].pop("expired_ts")),
        _mutate(lambda r: r.update(old_verify_keys=[])),
        _mutate(lambda r: r.update(signatures={})),
    ],
)
def test_malformed_or_unsigned_responses_are_rejected(bad: object) -> None:
    with pytest.raises(KeyResponseError):
        parse_server_keys(bad, expected_server_name="remote.example", now_ms=NOW)


def test_signature_only_by_an_old_key_is_not_enough() -> None:
    body = _response()
    body.pop("signatures")
    signed_by_old = sign_json(body, "remote.example", OLD)
    with pytest.raises(KeyResponseError, match="self-signed"):
        parse_server_keys(signed_by_old, expected_server_name="remote.example", now_ms=NOW)


def _notary_keys() -> dict:
    return {"ed25519:n1": get_verify_key(NOTARY_KEY)}


def test_notary_response_round_trip() -> None:
    cosigned = notary_sign(_response(), "notary.example", NOTARY_KEY)
    assert set(cosigned["signatures"]) == {"remote.example", "notary.example"}
    result = parse_notary_response(
        {"server_keys": [cosigned]}, notary_name="notary.example", notary_keys=_notary_keys(),
        now_ms=NOW, expected_servers=["remote.example"],
    )
    assert [k.server_name for k in result] == ["remote.example"]


def test_notary_sign_drops_other_notaries_signatures() -> None:
    other = sign_json(_response(), "other-notary.example", generate_signing_key("x"))
    cosigned = notary_sign(other, "notary.example", NOTARY_KEY)
    assert set(cosigned["signatures"]) == {"remote.example", "notary.example"}


def test_notary_response_without_notary_signature_is_rejected() -> None:
    with pytest.raises(KeyResponseError, match="notary"):
        parse_notary_response(
            {"server_keys": [_response()]}, notary_name="notary.example",
            notary_keys=_notary_keys(), now_ms=NOW,
        )


def test_notary_signature_by_an_unconfigured_key_is_rejected() -> None:
    cosigned = notary_sign(_response(), "notary.example", generate_signing_key("n1"))
    with pytest.raises(KeyResponseError):
        parse_notary_response(
            {"server_keys": [cosigned]}, notary_name="notary.example",
            notary_keys=_notary_keys(), now_ms=NOW,
        )


def test_notary_cannot_forge_the_origins_self_signature() -> None:
    forged = build_server_keys("remote.example", [generate_signing_key("a1")], NOW + 1000)
    forged = notary_sign(forged, "notary.example", NOTARY_KEY)
    # The notary's signature is fine and the response is self-consistent, but it
    # lists a different key: only cross-checks (several notaries) can catch that,
    # so here it parses; what must fail is a response whose self-signature is wrong.
    parse_notary_response({"server_keys": [forged]}, notary_name="notary.example",
                          notary_keys=_notary_keys(), now_ms=NOW)
    forged["verify_keys"]["ed25519:a1"]["key"] = encode_base64(get_verify_key(KEY).encode())
    forged = notary_sign(forged, "notary.example", NOTARY_KEY)
    with pytest.raises(KeyResponseError, match="self-signed"):
        parse_notary_response({"server_keys": [forged]}, notary_name="notary.example",
                              notary_keys=_notary_keys(), now_ms=NOW)


def test_notary_answering_for_unasked_server_is_rejected() -> None:
    cosigned = notary_sign(_response("sneaky.example"), "notary.example", NOTARY_KEY)
    with pytest.raises(KeyResponseError, match="not asked"):
        parse_notary_response(
            {"server_keys": [cosigned]}, notary_name="notary.example",
            notary_keys=_notary_keys(), now_ms=NOW, expected_servers=["remote.example"],
        )


@pytest.mark.parametrize("bad", [{}, {"server_keys": {}}, {"server_keys": [5]}, []])
def test_malformed_notary_responses(bad: object) -> None:
    with pytest.raises(KeyResponseError):
        parse_notary_response(bad, notary_name="notary.example", notary_keys=_notary_keys(),
                              now_ms=NOW)


def test_build_requires_a_key() -> None:
    with pytest.raises(ValueError):
        build_server_keys("x.example", [], NOW)
