"""Server-side key backups: versions, keys at the three levels, the replacement rule,
etag and count, the wrong-version answer, bounds, and deactivation; on both engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api, password_auth, running_api

ALGO = "m.megolm_backup.v1.curve25519-aes-sha2"
AUTH = {"public_key": "abcdefg", "signatures": {"@alice:test.local": {"ed25519:DEV": "sig"}}}
ROOM = "!room:test.local"
ROOM2 = "!other:test.local"


def key(fmi: int = 0, fc: int = 0, verified: bool = False, tag: str = "x") -> dict[str, Any]:
    return {
        "first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
        "session_data": {"ephemeral": tag, "ciphertext": "c", "mac": "m"},
    }


@pytest.fixture
async def engine_api(tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        yield api


async def new_backup(api: Api, token: str) -> str:
    resp = await api.post("room_keys/version", {"algorithm": ALGO, "auth_data": AUTH}, token=token)
    assert isinstance(resp["version"], str)
    return str(resp["version"])


async def error(api: Api, method: str, path: str, status: int, body: Any = None, **kw: Any) -> dict[str, Any]:
    _, resp = await api.request(method, path, body, expect=status, **kw)
    assert isinstance(resp, dict) and "errcode" in resp, resp
    return resp


async def test_versions(engine_api: Api) -> None:
    api = engine_api
    token = (await api.register("alice"))["access_token"]
    assert (await error(api, "GET", "room_keys/version", 404, token=token))["errcode"] == "M_NOT_FOUND"
    assert (await error(api, "GET", "room_keys/version/1", 404, token=token))["errcode"] == "M_NOT_FOUND"

    v1 = await new_backup(api, token)
    info = await api.get("room_keys/version", token=token)
    assert info == {"algorithm": ALGO, "auth_data": AUTH, "count": 0, "etag": info["etag"], "version": v1}
    assert isinstance(info["etag"], str)
    assert await api.get(f"room_keys/version/{v1}", token=token) == info

    # Update: only auth_data changes; the algorithm must match, and the body's version the path's.
    new_auth = {"public_key": "hijk"}
    assert await api.put(f"room_keys/version/{v1}", {"algorithm": ALGO, "auth_data": new_auth}, token=token) == {}
    await api.put(f"room_keys/version/{v1}", {"algorithm": ALGO, "auth_data": new_auth, "version": v1}, token=token)
    assert (await api.get("room_keys/version", token=token))["auth_data"] == new_auth
    err = await error(api, "PUT", f"room_keys/version/{v1}", 400, {"algorithm": "other", "auth_data": {}}, token=token)
    assert err["errcode"] == "M_INVALID_PARAM"
    err = await error(
        api, "PUT", f"room_keys/version/{v1}", 400, {"algorithm": ALGO, "auth_data": {}, "version": "99"}, token=token
    )
    assert err["errcode"] == "M_INVALID_PARAM"
    assert (await api.get("room_keys/version", token=token))["auth_data"] == new_auth
    for bad in ("99", "abc", "0", "-1", "99999999999999999999999"):
        err = await error(api, "PUT", f"room_keys/version/{bad}", 404, {"algorithm": ALGO, "auth_data": {}}, token=token)
        assert err["errcode"] == "M_NOT_FOUND"
        assert (await error(api, "GET", f"room_keys/version/{bad}", 404, token=token))["errcode"] == "M_NOT_FOUND"
        assert (await error(api, "DELETE", f"room_keys/version/{bad}", 404, token=token))["errcode"] == "M_NOT_FOUND"

    # A newer version becomes the current one; the older stays readable by number.
    v2 = await new_backup(api, token)
    assert v2 != v1
    assert (await api.get("room_keys/version", token=token))["version"] == v2
    assert (await api.get(f"room_keys/version/{v1}", token=token))["version"] == v1

    # Another user sees none of it.
    bob = (await api.register("bob"))["access_token"]
    await error(api, "GET", "room_keys/version", 404, token=bob)
    await error(api, "GET", f"room_keys/version/{v1}", 404, token=bob)
    await error(api, "DELETE", f"room_keys/version/{v1}", 404, token=bob)

    # Concurrent creations each get their own number.
    made = await asyncio.gather(*(new_backup(api, token) for _ in range(5)))
    assert len(set(made) | {v1, v2}) == 7
    for m in made:
        await api.request("DELETE", f"room_keys/version/{m}", token=token)

    # Deleting the current version makes the previous one current; numbers are never reused.
    assert await api.request("DELETE", f"room_keys/version/{v2}", token=token) == (200, {})
    await error(api, "GET", f"room_keys/version/{v2}", 404, token=token)
    await error(api, "DELETE", f"room_keys/version/{v2}", 404, token=token)
    assert (await api.get("room_keys/version", token=token))["version"] == v1
    v3 = await new_backup(api, token)
    assert v3 not in (v1, v2)
    await api.request("DELETE", f"room_keys/version/{v3}", token=token)
    await api.request("DELETE", f"room_keys/version/{v1}", token=token)
    await error(api, "GET", "room_keys/version", 404, token=token)

    # Unauthenticated requests are refused.
    await error(api, "GET", "room_keys/version", 401)
    await error(api, "POST", "room_keys/version", 401, {"algorithm": ALGO, "auth_data": {}})


async def test_keys_at_three_levels(engine_api: Api) -> None:
    api = engine_api
    token = (await api.register("alice"))["access_token"]
    v = await new_backup(api, token)
    etag0 = (await api.get("room_keys/version", token=token))["etag"]

    assert await api.get(f"room_keys/keys?version={v}", token=token) == {"rooms": {}}
    assert await api.get(f"room_keys/keys/{ROOM}?version={v}", token=token) == {"sessions": {}}
    err = await error(api, "GET", f"room_keys/keys/{ROOM}/s1?version={v}", 404, token=token)
    assert err["errcode"] == "M_NOT_FOUND"

    # One session.
    r1 = await api.put(f"room_keys/keys/{ROOM}/s1?version={v}", key(tag="one"), token=token)
    assert r1["count"] == 1 and isinstance(r1["etag"], str) and r1["etag"] != etag0
    assert await api.get(f"room_keys/keys/{ROOM}/s1?version={v}", token=token) == key(tag="one")
    # One room.
    r2 = await api.put(f"room_keys/keys/{ROOM}?version={v}", {"sessions": {"s2": key(tag="two")}}, token=token)
    assert r2["count"] == 2 and r2["etag"] not in (etag0, r1["etag"])
    # Everything.
    r3 = await api.put(
        f"room_keys/keys?version={v}",
        {"rooms": {ROOM2: {"sessions": {"s3": key(tag="three")}}, ROOM: {"sessions": {"s4": key(tag="four")}}}},
        token=token,
    )
    assert r3["count"] == 4
    info = await api.get(f"room_keys/version/{v}", token=token)
    assert info["count"] == 4 and info["etag"] == r3["etag"]

    assert await api.get(f"room_keys/keys?version={v}", token=token) == {"rooms": {
        ROOM: {"sessions": {"s1": key(tag="one"), "s2": key(tag="two"), "s4": key(tag="four")}},
        ROOM2: {"sessions": {"s3": key(tag="three")}},
    }}
    assert await api.get(f"room_keys/keys/{ROOM2}?version={v}", token=token) == {
        "sessions": {"s3": key(tag="three")}
    }

    # Deleting at each level; answers {etag, count}; the etag moves only when keys go.
    d1 = await api.request("DELETE", f"room_keys/keys/{ROOM}/s1?version={v}", token=token)
    assert d1[1]["count"] == 3 and d1[1]["etag"] != r3["etag"]
    await error(api, "GET", f"room_keys/keys/{ROOM}/s1?version={v}", 404, token=token)
    again = (await api.request("DELETE", f"room_keys/keys/{ROOM}/s1?version={v}", token=token))[1]
    assert again == d1[1]
    d2 = (await api.request("DELETE", f"room_keys/keys/{ROOM}?version={v}", token=token))[1]
    assert d2["count"] == 1 and d2["etag"] != d1[1]["etag"]
    assert await api.get(f"room_keys/keys/{ROOM}?version={v}", token=token) == {"sessions": {}}
    d3 = (await api.request("DELETE", f"room_keys/keys?version={v}", token=token))[1]
    assert d3["count"] == 0 and d3["etag"] != d2["etag"]
    assert await api.get(f"room_keys/keys?version={v}", token=token) == {"rooms": {}}
    info = await api.get("room_keys/version", token=token)
    assert info["count"] == 0 and info["etag"] == d3["etag"]

    # Deleting the version deletes its keys.
    await api.put(f"room_keys/keys/{ROOM}/s1?version={v}", key(), token=token)
    await api.request("DELETE", f"room_keys/version/{v}", token=token)
    assert await api.hs.db.fetchone("SELECT COUNT(*) FROM key_backup_sessions") == (0,)
    for path in ("room_keys/keys", f"room_keys/keys/{ROOM}", f"room_keys/keys/{ROOM}/s1"):
        assert (await error(api, "GET", f"{path}?version={v}", 404, token=token))["errcode"] == "M_NOT_FOUND"
        assert (await error(api, "DELETE", f"{path}?version={v}", 404, token=token))["errcode"] == "M_NOT_FOUND"
    err = await error(api, "PUT", f"room_keys/keys/{ROOM}/s1?version={v}", 404, key(), token=token)
    assert err["errcode"] == "M_NOT_FOUND"


async def test_replacement_precedence(engine_api: Api) -> None:
    api = engine_api
    token = (await api.register("alice"))["access_token"]
    v = await new_backup(api, token)
    path = f"room_keys/keys/{ROOM}/s?version={v}"

    async def put(k: dict[str, Any]) -> dict[str, Any]:
        return dict(await api.put(path, k, token=token))

    async def stored() -> Any:
        return await api.get(path, token=token)

    first = await put(key(fmi=5, fc=3, verified=False, tag="a"))
    # Worse or equal keys are ignored, and the etag does not move.
    for worse in (key(fmi=6, fc=0, tag="b"), key(fmi=5, fc=4, tag="b"), key(fmi=5, fc=3, tag="b")):
        assert await put(worse) == first
        assert (await stored())["session_data"]["ephemeral"] == "a"
    # A lower forwarded_count wins at an equal index.
    second = await put(key(fmi=5, fc=2, tag="c"))
    assert second["etag"] != first["etag"] and second["count"] == 1
    assert await stored() == key(fmi=5, fc=2, tag="c")
    # A lower first_message_index wins, whatever the forwarded_count.
    await put(key(fmi=1, fc=9, tag="d"))
    assert await stored() == key(fmi=1, fc=9, tag="d")
    # A verified key beats any unverified one, even with a higher index ...
    await put(key(fmi=100, fc=100, verified=True, tag="e"))
    assert await stored() == key(fmi=100, fc=100, verified=True, tag="e")
    # ... and an unverified one never replaces it.
    await put(key(fmi=0, fc=0, verified=False, tag="f"))
    assert (await stored())["session_data"]["ephemeral"] == "e"
    # Among verified keys the index, then the forwarded count, decide again.
    await put(key(fmi=50, fc=100, verified=True, tag="g"))
    assert (await stored())["session_data"]["ephemeral"] == "g"
    await put(key(fmi=50, fc=7, verified=True, tag="h"))
    assert await stored() == key(fmi=50, fc=7, verified=True, tag="h")
    # The same rule at the room and all-rooms levels.
    await api.put(f"room_keys/keys/{ROOM}?version={v}", {"sessions": {"s": key(fmi=60, verified=True, tag="i")}},
                  token=token)
    await api.put(f"room_keys/keys?version={v}", {"rooms": {ROOM: {"sessions": {"s": key(fmi=99, tag="j")}}}},
                  token=token)
    assert (await stored())["session_data"]["ephemeral"] == "h"
    await api.put(f"room_keys/keys?version={v}", {"rooms": {ROOM: {"sessions": {"s": key(fmi=49, verified=True,
                  tag="k")}}}}, token=token)
    assert (await stored())["session_data"]["ephemeral"] == "k"
    assert (await api.get("room_keys/version", token=token))["count"] == 1


async def test_wrong_version(engine_api: Api) -> None:
    api = engine_api
    token = (await api.register("alice"))["access_token"]
    # No backup at all: an upload is 404.
    err = await error(api, "PUT", f"room_keys/keys/{ROOM}/s?version=1", 404, key(), token=token)
    assert err["errcode"] == "M_NOT_FOUND"
    v1 = await new_backup(api, token)
    await api.put(f"room_keys/keys/{ROOM}/s?version={v1}", key(tag="old"), token=token)
    v2 = await new_backup(api, token)
    bodies = [
        ("room_keys/keys", {"rooms": {ROOM: {"sessions": {"t": key()}}}}),
        (f"room_keys/keys/{ROOM}", {"sessions": {"t": key()}}),
        (f"room_keys/keys/{ROOM}/t", key()),
    ]
    for path, body in bodies:
        for named in (v1, "77", "abc", ""):
            err = await error(api, "PUT", f"{path}?version={named}", 403, body, token=token)
            assert err["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
            assert err["current_version"] == v2
    assert (await api.get(f"room_keys/version/{v2}", token=token))["count"] == 0
    # The old version's keys stay readable (and deletable) by its number.
    assert (await api.get(f"room_keys/keys/{ROOM}/s?version={v1}", token=token))["session_data"]["ephemeral"] == "old"
    assert (await api.request("DELETE", f"room_keys/keys?version={v1}", token=token))[1]["count"] == 0
    # The version parameter is required everywhere.
    for method in ("GET", "PUT", "DELETE"):
        for path, body in bodies:
            err = await error(api, method, path, 400, body if method == "PUT" else None, token=token)
            assert err["errcode"] == "M_MISSING_PARAM"


async def test_hostile_input(engine_api: Api) -> None:
    api = engine_api
    token = (await api.register("alice"))["access_token"]
    big = 2**63
    for body in (
        {}, {"algorithm": ALGO}, {"auth_data": {}}, {"algorithm": 5, "auth_data": {}},
        {"algorithm": ALGO, "auth_data": []}, {"algorithm": ALGO, "auth_data": "x"},
        {"algorithm": "", "auth_data": {}}, {"algorithm": "a" * 1000, "auth_data": {}},
        {"algorithm": "a\u0000b", "auth_data": {}},
    ):
        status, resp = await api.request("POST", "room_keys/version", body, token=token, expect=None)
        assert status == 400 and resp["errcode"] in ("M_MISSING_PARAM", "M_BAD_JSON", "M_INVALID_PARAM"), body
    status, resp = await api.request("POST", "room_keys/version", data=b"[1]", token=token, expect=None)
    assert status == 400
    status, resp = await api.request("POST", "room_keys/version", data=b"{nope", token=token, expect=None)
    assert status == 400 and resp["errcode"] == "M_NOT_JSON"
    v = await new_backup(api, token)
    put_version = [
        {"algorithm": ALGO}, {"algorithm": ALGO, "auth_data": 1}, {"algorithm": ALGO, "auth_data": {}, "version": 1},
        {"auth_data": {}},
    ]
    for body in put_version:
        status, resp = await api.request("PUT", f"room_keys/version/{v}", body, token=token, expect=None)
        assert status == 400, (body, resp)

    bad_keys: list[Any] = [
        [], "x", 1, None, {}, key() | {"first_message_index": -1}, key() | {"first_message_index": big},
        key() | {"forwarded_count": big * 4}, key() | {"forwarded_count": "1"}, key() | {"forwarded_count": 1.5},
        key() | {"first_message_index": True}, key() | {"is_verified": 1}, key() | {"is_verified": "true"},
        key() | {"session_data": "x"}, key() | {"session_data": []}, key() | {"session_data": None},
        {k: val for k, val in key().items() if k != "is_verified"},
    ]
    for bad in bad_keys:
        status, resp = await api.request("PUT", f"room_keys/keys/{ROOM}/s?version={v}", bad, token=token, expect=None)
        assert status == 400, (bad, status, resp)
        status, resp = await api.request(
            "PUT", f"room_keys/keys/{ROOM}?version={v}", {"sessions": {"s": bad}}, token=token, expect=None
        )
        assert status == 400, (bad, status, resp)
        status, resp = await api.request(
            "PUT", f"room_keys/keys?version={v}", {"rooms": {ROOM: {"sessions": {"s": bad}}}}, token=token, expect=None
        )
        assert status == 400, (bad, status, resp)
    for body in ({}, {"rooms": []}, {"rooms": {ROOM: []}}, {"rooms": {ROOM: {}}}, {"rooms": {ROOM: {"sessions": 1}}},
                 {"rooms": {"not-a-room": {"sessions": {}}}}, {"rooms": {ROOM: {"sessions": {"": key()}}}},
                 {"rooms": {ROOM: {"sessions": {"s" * 300: key()}}}},
                 {"rooms": {ROOM: {"sessions": {"a\u0000b": key()}}}}, {"rooms": {"!a\u0000b:x": {"sessions": {}}}}):
        status, resp = await api.request("PUT", f"room_keys/keys?version={v}", body, token=token, expect=None)
        assert status == 400, (body, status, resp)
    for path in ("room_keys/keys/not-a-room", "room_keys/keys/not-a-room/s", f"room_keys/keys/{ROOM}/{'s' * 300}"):
        for method in ("GET", "DELETE", "PUT"):
            body = {"sessions": {}} if path.count("/") == 2 else key()
            status, resp = await api.request(
                method, f"{path}?version={v}", body if method == "PUT" else None, token=token, expect=None
            )
            assert status == 400, (method, path, status, resp)
    for version in ("99999999999999999999999999", "-5", "1e3", "٣", "%00"):
        for method in ("GET", "DELETE"):
            status, resp = await api.request(method, f"room_keys/keys?version={version}", token=token, expect=None)
            assert status == 404, (method, version, status, resp)
    # NUL inside the opaque JSON is stored and served as it came.
    odd = key() | {"session_data": {"x\u0000": "\u0000\U0001f600"}}
    await api.put(f"room_keys/keys/{ROOM}/n?version={v}", odd, token=token)
    assert await api.get(f"room_keys/keys/{ROOM}/n?version={v}", token=token) == odd
    await api.request("DELETE", f"room_keys/keys/{ROOM}/n?version={v}", token=token)
    # The extremes of the counters are fine.
    extreme = key(fmi=2**63 - 1, fc=2**63 - 1)
    assert (await api.put(f"room_keys/keys/{ROOM}/s?version={v}", extreme, token=token))["count"] == 1
    assert await api.get(f"room_keys/keys/{ROOM}/s?version={v}", token=token) == extreme
    # Nothing of the refused requests was stored.
    assert (await api.get("room_keys/version", token=token))["count"] == 1


async def test_session_limit_per_put(engine_api: Api) -> None:
    from homeserver.api.client.room_keys import MAX_SESSIONS_PER_PUT

    api = engine_api
    token = (await api.register("alice"))["access_token"]
    v = await new_backup(api, token)
    small = {"first_message_index": 0, "forwarded_count": 0, "is_verified": False, "session_data": {}}
    split = MAX_SESSIONS_PER_PUT // 2
    too_many = {
        "rooms": {
            ROOM: {"sessions": {f"a{i}": small for i in range(split)}},
            ROOM2: {"sessions": {f"b{i}": small for i in range(MAX_SESSIONS_PER_PUT - split + 1)}},
        }
    }
    err = await error(api, "PUT", f"room_keys/keys?version={v}", 413, too_many, token=token)
    assert err["errcode"] == "M_TOO_LARGE"
    sessions = {"sessions": {f"a{i}": small for i in range(MAX_SESSIONS_PER_PUT + 1)}}
    err = await error(api, "PUT", f"room_keys/keys/{ROOM}?version={v}", 413, sessions, token=token)
    assert (await api.get("room_keys/version", token=token))["count"] == 0
    del too_many["rooms"][ROOM2]["sessions"]["b0"]
    assert (await api.put(f"room_keys/keys?version={v}", too_many, token=token))["count"] == MAX_SESSIONS_PER_PUT


async def test_deactivation_deletes_backups(engine_api: Api) -> None:
    api = engine_api
    reg = await api.register("alice")
    token = reg["access_token"]
    bob = (await api.register("bob"))["access_token"]
    for t in (token, bob):
        v = await new_backup(api, t)
        await api.put(f"room_keys/keys/{ROOM}/s?version={v}", key(), token=t)
    await new_backup(api, token)
    _, challenge = await api.request("POST", "account/deactivate", {}, token=token, expect=401)
    await api.post("account/deactivate", {"auth": password_auth(challenge["session"], "alice")}, token=token)
    for table in ("key_backup_versions", "key_backup_sessions"):
        rows = await api.hs.db.fetchall(f"SELECT DISTINCT user_id FROM {table}")
        assert rows == [("@bob:test.local",)], table
    assert (await api.get("room_keys/version", token=bob))["count"] == 1
