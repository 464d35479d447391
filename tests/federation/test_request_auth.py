"""X-Matrix request signatures: round trips, every rejection, header grammar."""

from __future__ import annotations

import pytest
from signedjson.sign import sign_json as reference_sign
from signedjson.sign import verify_signed_json

from federation.events.signing import generate_signing_key, get_verify_key, key_id_of
from federation.request_auth import (
    RequestAuthError,
    XMatrixAuth,
    format_authorization_header,
    parse_authorization_header,
    request_json,
    sign_request,
    verify_request,
)

ORIGIN = "origin.example"
DEST = "dest.example:8448"
KEY = generate_signing_key("k1")
OTHER_KEY = generate_signing_key("k1")
URI = "/_matrix/federation/v1/send/txn1?limit=10&dir=b"
CONTENT = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"x": 1}}]}


def _signed(**overrides: object) -> XMatrixAuth:
    kwargs: dict = dict(
        method="PUT", uri=URI, origin=ORIGIN, destination=DEST, signing_key=KEY, content=CONTENT
    )
    kwargs.update(overrides)
    return parse_authorization_header(sign_request(**kwargs))


def _verify(auth: XMatrixAuth, **overrides: object) -> None:
    kwargs: dict = dict(
        method="PUT", uri=URI, our_server_name=DEST, verify_key=get_verify_key(KEY), content=CONTENT
    )
    kwargs.update(overrides)
    verify_request(auth, **kwargs)


def test_round_trip_with_and_without_content() -> None:
    auth = _signed()
    assert auth.origin == ORIGIN and auth.destination == DEST and auth.key_id == key_id_of(KEY)
    _verify(auth)
    bodiless = _signed(method="GET", content=None)
    _verify(bodiless, method="GET", content=None)
    # Method case is normalised: the wire method is upper-case anyway.
    _verify(bodiless, method="get", content=None)


def test_header_is_formatted_as_the_spec_recommends() -> None:
    header = sign_request(
        method="GET", uri="/x", origin=ORIGIN, destination=DEST, signing_key=KEY
    )
    assert header.startswith('X-Matrix origin="origin.example",destination="dest.example:8448",key="ed25519:k1",sig="')
    assert " ," not in header and ", " not in header


@pytest.mark.parametrize(
    "overrides",
    [
        {"verify_key": get_verify_key(OTHER_KEY)},  # wrong key
        {"content": {**CONTENT, "pdus": [{"evil": True}]}},  # tampered body
        {"content": None},  # body stripped
        {"uri": "/_matrix/federation/v1/send/txn1?limit=11&dir=b"},  # tampered query
        {"uri": "/_matrix/federation/v1/send/txn2?limit=10&dir=b"},  # tampered path
        {"method": "POST"},  # other method
    ],
)
def test_tampering_is_rejected(overrides: dict) -> None:
    with pytest.raises(RequestAuthError):
        _verify(_signed(), **overrides)


def test_wrong_origin_is_rejected() -> None:
    auth = _signed()
    forged = XMatrixAuth(origin="evil.example", key_id=auth.key_id, signature=auth.signature,
                         destination=auth.destination)
    with pytest.raises(RequestAuthError):
        _verify(forged)


def test_wrong_destination_is_rejected_with_or_without_header_param() -> None:
    auth = _signed()
    with pytest.raises(RequestAuthError, match="destination"):
        _verify(auth, our_server_name="someone.else")
    # Without the destination parameter (older senders), the signed object still
    # names the destination, so a request meant for another server fails anyway.
    legacy = XMatrixAuth(origin=auth.origin, key_id=auth.key_id, signature=auth.signature)
    _verify(legacy)
    with pytest.raises(RequestAuthError):
        _verify(legacy, our_server_name="someone.else")


def test_bad_signature_encoding_is_rejected() -> None:
    auth = _signed()
    for sig in ("!!!notbase64", auth.signature[:-4], ""):
        with pytest.raises(RequestAuthError):
            _verify(XMatrixAuth(auth.origin, auth.key_id, sig or "AAAA", auth.destination))


@pytest.mark.parametrize(
    "header",
    [
        'x-matrix origin="origin.example",destination="dest.example:8448",key="ed25519:k1",sig="c2ln"',
        'X-Matrix   origin=origin.example , destination=dest.example:8448,\tkey=ed25519:k1,sig=c2ln',
        'X-Matrix ORIGIN="origin.example",Key="ed25519:k1",SIG="c2ln",Destination="dest.example:8448"',
        'X-Matrix sig="c2ln",key="ed25519:k1",origin="or\\igin.example",destination="dest.example:8448",extra="ignored, really"',
    ],
)
def test_header_variants_the_spec_allows(header: str) -> None:
    auth = parse_authorization_header(header)
    assert auth == XMatrixAuth("origin.example", "ed25519:k1", "c2ln", "dest.example:8448")


def test_destination_is_optional() -> None:
    auth = parse_authorization_header('X-Matrix origin=a.example,key="ed25519:k",sig="s"')
    assert auth.destination is None
    assert format_authorization_header(auth) == 'X-Matrix origin="a.example",key="ed25519:k",sig="s"'


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer abc",
        "X-Matrix",
        "X-Matrixorigin=a",
        'X-Matrix key="ed25519:k",sig="s"',  # no origin
        'X-Matrix origin="a.example",sig="s"',  # no key
        'X-Matrix origin="a.example",key="ed25519:k"',  # no sig
        'X-Matrix origin="a.example",key="rsa:k",sig="s"',  # not ed25519
        'X-Matrix origin="a.example",key="ed25519:",sig="s"',
        'X-Matrix origin="not a name!",key="ed25519:k",sig="s"',
        'X-Matrix origin="a.example",destination="bad name",key="ed25519:k",sig="s"',
        'X-Matrix origin="a.example,key="ed25519:k",sig="s"',  # unterminated quote
        'X-Matrix origin="a.example" key="ed25519:k",sig="s"',  # missing comma
        'X-Matrix origin=,key="ed25519:k",sig="s"',  # empty value
        'X-Matrix origin="a.example",,key="ed25519:k",sig="s"',
        'X-Matrix origin="a.example",origin="b.example",key="ed25519:k",sig="s"',  # duplicate
        'X-Matrix origin',
    ],
)
def test_malformed_headers_are_rejected(header: str) -> None:
    with pytest.raises(RequestAuthError):
        parse_authorization_header(header)


def test_bodies_with_floats_are_signed_as_synapse_signs_them() -> None:
    """A transaction carrying an event of room versions 1-5 may hold floats; the body is
    signed over Python canonicaljson's bytes (what Synapse signs and checks, via
    signedjson), and a signature over those bytes verifies here."""
    content = {"pdus": [{"content": {"rating": 4.5, "whole": 2.0, "huge": 1e100, "big": 2**60}}], "edus": []}
    auth = _signed(content=content)
    _verify(auth, content=content)
    obj = request_json("PUT", URI, ORIGIN, DEST, content)
    verify_signed_json({**obj, "signatures": {ORIGIN: {auth.key_id: auth.signature}}}, ORIGIN, get_verify_key(KEY))
    theirs = reference_sign(dict(obj), ORIGIN, KEY)["signatures"][ORIGIN][auth.key_id]
    _verify(XMatrixAuth(ORIGIN, auth.key_id, theirs, DEST), content=content)
    # The same value with an integer where the float was is another body.
    with pytest.raises(RequestAuthError):
        _verify(auth, content={**content, "pdus": [{"content": {"rating": 4.5, "whole": 2, "huge": 1e100, "big": 2**60}}]})
