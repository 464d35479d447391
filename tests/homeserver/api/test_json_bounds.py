"""The nesting bound and canonical JSON's numbers at the client API's boundary.

Content nested deeper than the encoders can write used to be accepted and then
break /sync for every member, /messages for good and the federation sender.
Every body-taking endpoint must refuse what cannot be written back, with the
spec's 400, and everything accepted must stay readable.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from federation.events.json_bounds import MAX_EVENT_DEPTH, MAX_JSON_DEPTH
from tests.conftest import Api


def nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` levels deep: {"a": {"a": ... {} }}."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def deep_raw(depth: int) -> bytes:
    """The JSON text of ``nested(depth)``, for depths the test's own encoder refuses."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


async def send_raw(api: Api, method: str, path: str, raw: bytes, token: str) -> tuple[int, Any]:
    return await api.request(
        method, path, data=raw, token=token, expect=None, headers={"Content-Type": "application/json"}
    )


async def _room(api: Api) -> tuple[str, str]:
    token = (await api.register("alice"))["access_token"]
    room_id = (await api.post("createRoom", {}, token=token))["room_id"]
    return token, room_id


async def _readable(api: Api, token: str, room_id: str) -> dict[str, Any]:
    sync = await api.get("sync", token=token)
    await api.get(f"rooms/{room_id}/messages?dir=b&limit=50", token=token)
    return sync


async def test_content_at_the_bound_is_accepted_and_readable(api: Api) -> None:
    token, room_id = await _room(api)
    content = {"msgtype": "m.text", "body": "deep", "x": nested(MAX_EVENT_DEPTH - 2)}
    sent = await api.put(f"rooms/{room_id}/send/m.room.message/t1", content, token=token)
    sync = await _readable(api, token, room_id)
    events = sync["rooms"]["join"][room_id]["timeline"]["events"]
    assert any(e["event_id"] == sent["event_id"] and e["content"] == content for e in events)


@pytest.mark.parametrize("depth", [MAX_EVENT_DEPTH, MAX_JSON_DEPTH + 1, 252, 300, 1000])
async def test_content_past_the_bound_is_refused_and_the_room_stays_readable(api: Api, depth: int) -> None:
    token, room_id = await _room(api)
    for path in (f"rooms/{room_id}/send/m.room.message/t{depth}", f"rooms/{room_id}/state/m.deep/k"):
        status, body = await send_raw(api, "PUT", path, deep_raw(depth), token)
        assert status == 400 and body["errcode"] == "M_BAD_JSON", (path, status, body)
    await _readable(api, token, room_id)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 200, 252, 1000])
async def test_other_bodies_past_the_bound_are_refused(api: Api, depth: int) -> None:
    token, room_id = await _room(api)
    user = "@alice:test.local"
    deep = deep_raw(depth)
    for method, path, body in (
        ("PUT", f"user/{user}/account_data/m.deep", deep),
        ("PUT", f"user/{user}/rooms/{room_id}/account_data/m.deep", deep),
        ("POST", f"user/{user}/filter", b'{"room":' + deep + b"}"),
        ("PUT", f"profile/{user}/displayname", b'{"displayname":"x","d":' + deep + b"}"),
        ("POST", "createRoom", b'{"creation_content":' + deep + b"}"),
    ):
        status, answer = await send_raw(api, method, path, body, token)
        assert status == 400 and answer["errcode"] == "M_BAD_JSON", (path, status, answer)
    await _readable(api, token, room_id)


async def test_account_data_at_the_body_bound_is_written_back(api: Api) -> None:
    token, room_id = await _room(api)
    user = "@alice:test.local"
    deep = nested(MAX_JSON_DEPTH)
    await api.put(f"user/{user}/account_data/m.deep", deep, token=token)
    await api.put(f"user/{user}/rooms/{room_id}/account_data/m.deep", deep, token=token)
    assert await api.get(f"user/{user}/account_data/m.deep", token=token) == deep
    sync = await _readable(api, token, room_id)
    assert {"type": "m.deep", "content": deep} in sync["account_data"]["events"]
    assert {"type": "m.deep", "content": deep} in sync["rooms"]["join"][room_id]["account_data"]["events"]


async def test_deep_filter_query_parameter_is_refused(api: Api) -> None:
    token, room_id = await _room(api)
    deep = '{"room":' + deep_raw(MAX_JSON_DEPTH + 10).decode() + "}"
    for path in (f"sync?filter={deep}", f"rooms/{room_id}/messages?dir=b&filter={deep}"):
        status, body = await api.request("GET", path, token=token, expect=None)
        assert status == 400 and body["errcode"] == "M_BAD_JSON", (path, status, body)


@pytest.mark.parametrize(
    "raw",
    [b'{"body": 1.5}', b'{"body": 9007199254740992}', b'{"body": -9007199254740992}',
     b'{"body": 18446744073709551616}', b'{"body": 1e400}', b'{"body": NaN}'],
)
async def test_event_numbers_outside_canonical_json_are_refused(api: Api, raw: bytes) -> None:
    """Rooms v6 and later allow only canonical JSON's integers in events."""
    token, room_id = await _room(api)
    status, body = await api.request(
        "PUT", f"rooms/{room_id}/send/m.room.message/n", data=raw, token=token, expect=None,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and body["errcode"] in ("M_BAD_JSON", "M_NOT_JSON"), body
    await _readable(api, token, room_id)


async def test_event_floats_in_rooms_before_v6(api: Api) -> None:
    """Versions 1-5 predate the rule: floats and large integers are kept in events (and
    hashed as Synapse does, see federation/events/canonical.py); v6 refuses them."""
    token = (await api.register("alice"))["access_token"]
    content = {"msgtype": "m.text", "body": "floats", "rating": 4.5, "whole": 2.0, "big": 2**60}
    for version, expect in (("5", 200), ("6", 400)):
        room_id = (await api.post("createRoom", {"room_version": version}, token=token))["room_id"]
        status, body = await api.request(
            "PUT", f"rooms/{room_id}/send/m.room.message/f", content, token=token, expect=None
        )
        assert status == expect, body
        if expect == 200:
            event = await api.get(f"rooms/{room_id}/event/{body['event_id']}", token=token)
            assert event["content"] == content
            assert isinstance(event["content"]["whole"], float)
        else:
            assert body["errcode"] == "M_BAD_JSON"


async def test_big_integers_outside_events_are_kept(api: Api) -> None:
    """Account data is not an event: integers beyond 2**53 are plain JSON there."""
    token, _ = await _room(api)
    user = "@alice:test.local"
    await api.put(f"user/{user}/account_data/m.big", {"n": 2**60}, token=token)
    assert await api.get(f"user/{user}/account_data/m.big", token=token) == {"n": 2**60}


async def test_an_event_stored_before_the_bound_does_not_break_reads(api: Api) -> None:
    """A database written before the bound may hold an event orjson cannot encode:
    /sync and /messages still answer, with the event."""
    token, room_id = await _room(api)
    sent = await api.put(
        f"rooms/{room_id}/send/m.room.message/old", {"msgtype": "m.text", "body": "x"}, token=token
    )
    stored = await api.hs.event_store.get_event(sent["event_id"])
    assert stored is not None
    raw = orjson.dumps(stored.event)
    assert b'"content":{"msgtype":"m.text"' in raw
    legacy = raw.replace(b'"content":{"msgtype"', b'"content":{"legacy":' + deep_raw(300) + b',"msgtype"')

    async def fn(txn: Any) -> None:
        await txn.execute("UPDATE events SET json = ? WHERE event_id = ?", (legacy.decode(), sent["event_id"]))

    await api.hs.db.write(fn)
    api.hs.event_store.forget(sent["event_id"])
    status, _ = await api.request("GET", f"rooms/{room_id}/messages?dir=b&limit=10", token=token, expect=None)
    assert status == 200
    status, _ = await api.request("GET", "sync", token=token, expect=None)
    assert status == 200


async def test_transaction_ids_are_scoped_to_the_endpoint_and_its_parameters(api: Api) -> None:
    token, room_a = await _room(api)
    room_b = (await api.post("createRoom", {}, token=token))["room_id"]
    msg = {"msgtype": "m.text", "body": "hi"}
    first = await api.put(f"rooms/{room_a}/send/m.room.message/txn", msg, token=token)
    # A retransmission: same endpoint, same parameters.
    again = await api.put(f"rooms/{room_a}/send/m.room.message/txn", msg, token=token)
    assert again["event_id"] == first["event_id"]
    # Same txnId elsewhere: new requests, new events.
    other_room = await api.put(f"rooms/{room_b}/send/m.room.message/txn", msg, token=token)
    other_type = await api.put(f"rooms/{room_a}/send/m.reaction.test/txn", {}, token=token)
    redaction = await api.put(f"rooms/{room_a}/redact/{first['event_id']}/txn", {}, token=token)
    ids = {first["event_id"], other_room["event_id"], other_type["event_id"], redaction["event_id"]}
    assert len(ids) == 4
    original = await api.get(f"rooms/{room_a}/event/{first['event_id']}", token=token)
    assert original["content"] == {}, "the redaction must have been applied"
    # The redaction is idempotent too, and distinct per target.
    assert (await api.put(f"rooms/{room_a}/redact/{first['event_id']}/txn", {}, token=token)) == redaction
    second_target = await api.put(f"rooms/{room_a}/redact/{other_type['event_id']}/txn", {}, token=token)
    assert second_target["event_id"] not in ids


def test_encoded_parts_embed_in_either_encoder() -> None:
    """A part encoded once (a shared sync timeline) is embedded byte for byte, and a
    body orjson refuses (an integer beyond 64 bits stored before the bound) still
    encodes, with the embedded part inside it, through the standard library."""
    from homeserver.api.http import encode_json
    from homeserver.records.encoded_json import EncodedJSON

    part = {"events": [{"content": {"body": "é \u2028", "n": 2**62}}], "limited": False}
    whole = {"next_batch": "s1", "rooms": {"join": {"!r:x": {"timeline": part}}}}
    embedded = {"next_batch": "s1", "rooms": {"join": {"!r:x": {"timeline": EncodedJSON.of(part)}}}}
    assert encode_json(embedded) == encode_json(whole) == orjson.dumps(whole)
    big = {**whole, "account_data": {"events": [{"content": {"n": 2**70}}]}}
    big_embedded = {**embedded, "account_data": {"events": [{"content": {"n": 2**70}}]}}
    assert json.loads(encode_json(big_embedded)) == json.loads(encode_json(big)) == {
        **whole, "account_data": {"events": [{"content": {"n": 2**70}}]}
    }
    with pytest.raises(TypeError):
        encode_json({"x": object()})
