"""POST /keys/upload, /keys/query and /keys/claim for local users, with real keys."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.homeserver.e2ee.keyhelpers import cs_keys, device_keys, login_device, new_key, otk


async def upload(api: Api, token: str, body: dict[str, Any], expect: int = 200) -> Any:
    return (await api.request("POST", "keys/upload", body, token=token, expect=expect))[1]


async def test_upload_query_and_counts(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    key = new_key(dev)
    dk = device_keys(alice, dev, key)
    otks = {f"signed_curve25519:AAA{i}": otk(alice, key, i) for i in range(3)}
    res = await upload(api, tok, {"device_keys": dk, "one_time_keys": otks})
    assert res == {"one_time_key_counts": {"signed_curve25519": 3}}
    # An empty upload answers the counts.
    assert await upload(api, tok, {}) == {"one_time_key_counts": {"signed_curve25519": 3}}
    bob, btok, _ = await login_device(api, "bob")
    q = await api.post("keys/query", {"device_keys": {alice: []}}, token=btok)
    served = q["device_keys"][alice][dev]
    assert served["keys"] == dk["keys"] and served["signatures"] == dk["signatures"]
    assert "device_display_name" in served.get("unsigned", {}) or served.get("unsigned") is None
    q = await api.post("keys/query", {"device_keys": {alice: [dev, "NOPE"], "@nobody:test.local": []}}, token=btok)
    assert list(q["device_keys"][alice]) == [dev]
    assert q["device_keys"]["@nobody:test.local"] == {}
    q = await api.post("keys/query", {"device_keys": {"@x:remote.example": []}}, token=btok)
    assert "remote.example" in q["failures"]


async def test_device_keys_must_name_requester_and_verify(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    bob, _, bdev = await login_device(api, "bob")
    key = new_key(dev)
    for bad in (
        device_keys(bob, dev, key),  # another user
        device_keys(alice, "OTHERDEV", new_key("OTHERDEV")),  # another device
        device_keys(alice, dev, key, sign_with=new_key(dev)),  # signed by another key
    ):
        res = await upload(api, tok, {"device_keys": bad}, expect=400)
        assert res["errcode"] == "M_INVALID_PARAM"
    unsigned = device_keys(alice, dev, key)
    del unsigned["signatures"]
    assert (await upload(api, tok, {"device_keys": unsigned}, expect=400))["errcode"] == "M_INVALID_PARAM"
    tampered = device_keys(alice, dev, key)
    tampered["algorithms"] = ["evil"]
    assert (await upload(api, tok, {"device_keys": tampered}, expect=400))["errcode"] == "M_INVALID_PARAM"
    no_alg = device_keys(alice, dev, key)
    del no_alg["algorithms"]
    assert (await upload(api, tok, {"device_keys": no_alg}, expect=400))["errcode"] == "M_INVALID_PARAM"
    # Nothing was stored.
    q = await api.post("keys/query", {"device_keys": {alice: []}}, token=tok)
    assert q["device_keys"][alice] == {}


async def test_new_identity_keys_replace_and_announce(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    changed: list[str] = []

    async def listener(user_id: str) -> None:
        changed.append(user_id)

    api.hs.device_lists.on_change.append(listener)
    first = device_keys(alice, dev, new_key(dev))
    await upload(api, tok, {"device_keys": first})
    assert changed == [alice]
    await upload(api, tok, {"device_keys": first})  # the same keys: no change
    assert changed == [alice]
    second = device_keys(alice, dev, new_key(dev))
    await upload(api, tok, {"device_keys": second})
    assert changed == [alice, alice]
    q = await api.post("keys/query", {"device_keys": {alice: [dev]}}, token=tok)
    assert q["device_keys"][alice][dev]["keys"] == second["keys"]


async def test_one_time_keys_dedup_and_conflict(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    key = new_key(dev)
    k1 = otk(alice, key, 1)
    await upload(api, tok, {"one_time_keys": {"signed_curve25519:K1": k1}})
    # The same ID with the same key is fine and counted once.
    res = await upload(api, tok, {"one_time_keys": {"signed_curve25519:K1": k1}})
    assert res["one_time_key_counts"]["signed_curve25519"] == 1
    res = await upload(
        api, tok, {"one_time_keys": {"signed_curve25519:K1": otk(alice, key, 2), "signed_curve25519:K2": k1}},
        expect=400,
    )
    assert res["errcode"] == "M_INVALID_PARAM"
    assert (await upload(api, tok, {}))["one_time_key_counts"]["signed_curve25519"] == 1
    # Malformed key IDs and values.
    for bad in ({"nocolon": k1}, {"signed_curve25519:K3": 5}, {"signed_curve25519:K3": {"nokey": 1}},
                {"signed_curve25519:" + "x" * 300: k1}, {"signed_curve25519:K3": {"key": "a" * 5000}}):
        assert (await upload(api, tok, {"one_time_keys": bad}, expect=400))["errcode"] == "M_INVALID_PARAM"


async def test_oversized_upload(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    many = {f"curve25519:{i}": "a" for i in range(501)}
    assert (await upload(api, tok, {"one_time_keys": many}, expect=413))["errcode"] == "M_TOO_LARGE"
    fb = {f"alg{i}:k": {"key": "a", "fallback": True} for i in range(11)}
    assert (await upload(api, tok, {"fallback_keys": fb}, expect=413))["errcode"] == "M_TOO_LARGE"
    assert (await upload(api, tok, {"one_time_keys": []}, expect=400))["errcode"] == "M_BAD_JSON"


async def test_claim_otk_then_fallback(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    bob, btok, _ = await login_device(api, "bob")
    key = new_key(dev)
    k1, k2 = otk(alice, key, 1), otk(alice, key, 2)
    fb = otk(alice, key, 9, fallback=True)
    await upload(api, tok, {"one_time_keys": {"signed_curve25519:A": k1, "signed_curve25519:B": k2},
                            "fallback_keys": {"signed_curve25519:F": fb}})
    claim = {"one_time_keys": {alice: {dev: "signed_curve25519", "NODEV": "signed_curve25519"},
                               "@ghost:test.local": {"X": "signed_curve25519"},
                               "@far:remote.example": {"X": "signed_curve25519"}}}
    got1 = await api.post("keys/claim", claim, token=btok)
    got2 = await api.post("keys/claim", claim, token=btok)
    assert got1["one_time_keys"] == {alice: {dev: {"signed_curve25519:A": k1}}}
    assert got2["one_time_keys"] == {alice: {dev: {"signed_curve25519:B": k2}}}
    assert "remote.example" in got1["failures"]
    assert (await upload(api, tok, {}))["one_time_key_counts"] == {"signed_curve25519": 0}
    # Out of one-time keys: the fallback key, every time (marked used).
    for _ in range(2):
        got = await api.post("keys/claim", claim, token=btok)
        assert got["one_time_keys"] == {alice: {dev: {"signed_curve25519:F": fb}}}
    # A new fallback key replaces it.
    fb2 = otk(alice, key, 10, fallback=True)
    await upload(api, tok, {"fallback_keys": {"signed_curve25519:G": fb2}})
    got = await api.post("keys/claim", claim, token=btok)
    assert got["one_time_keys"] == {alice: {dev: {"signed_curve25519:G": fb2}}}


async def test_concurrent_claims_never_share_a_key(api: Api) -> None:
    import asyncio

    alice, tok, dev = await login_device(api, "alice")
    key = new_key(dev)
    await upload(api, tok, {"one_time_keys": {f"signed_curve25519:K{i}": otk(alice, key, i) for i in range(10)}})
    claim = {"one_time_keys": {alice: {dev: "signed_curve25519"}}}
    results = await asyncio.gather(*(api.post("keys/claim", claim, token=tok) for _ in range(12)))
    ids = [next(iter(r["one_time_keys"][alice][dev])) for r in results if r["one_time_keys"]]
    assert len(ids) == 10 and len(set(ids)) == 10


async def test_sync_carries_key_counts_in_every_response(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    bob, btok, _ = await login_device(api, "bob")
    key = new_key(dev)
    initial = await api.get("sync", token=tok)
    assert initial["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert initial["device_unused_fallback_key_types"] == []
    fb = otk(alice, key, 9, fallback=True)
    await upload(api, tok, {"one_time_keys": {"signed_curve25519:A": otk(alice, key, 1)},
                            "fallback_keys": {"signed_curve25519:F": fb}})
    # Incremental, nothing else moved: still there, and without waiting out the timeout.
    inc = await api.get(f"sync?since={initial['next_batch']}&timeout=0", token=tok)
    assert inc["device_one_time_keys_count"] == {"signed_curve25519": 1}
    assert inc["device_unused_fallback_key_types"] == ["signed_curve25519"]
    claim = {"one_time_keys": {alice: {dev: "signed_curve25519"}}}
    await api.post("keys/claim", claim, token=btok)
    await api.post("keys/claim", claim, token=btok)  # the fallback key, now used
    inc = await api.get(f"sync?since={inc['next_batch']}&timeout=0", token=tok)
    assert inc["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert inc["device_unused_fallback_key_types"] == []
    # Re-uploading the used fallback key keeps it used; a new one is unused.
    await upload(api, tok, {"fallback_keys": {"signed_curve25519:F": fb}})
    assert (await api.get("sync", token=tok))["device_unused_fallback_key_types"] == []
    await upload(api, tok, {"fallback_keys": {"signed_curve25519:G": otk(alice, key, 10, fallback=True)}})
    assert (await api.get("sync", token=tok))["device_unused_fallback_key_types"] == ["signed_curve25519"]
    # The counts alone are not news: a long poll with nothing new waits out its timeout.
    import time

    started = time.monotonic()
    inc = await api.get(f"sync?since={inc['next_batch']}&timeout=300", token=tok)
    assert time.monotonic() - started >= 0.25
    assert "device_one_time_keys_count" in inc


async def test_deleting_a_device_removes_its_keys(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    second = await api.login("alice")
    dev2, tok2 = second["device_id"], second["access_token"]
    key = new_key(dev2)
    await upload(api, tok2, {"device_keys": device_keys(alice, dev2, key),
                             "one_time_keys": {"signed_curve25519:A": otk(alice, key, 1)},
                             "fallback_keys": {"signed_curve25519:F": otk(alice, key, 2, fallback=True)}})
    changed: list[str] = []

    async def listener(user_id: str) -> None:
        changed.append(user_id)

    api.hs.device_lists.on_change.append(listener)
    status, challenge = await api.request("DELETE", f"devices/{dev2}", {}, token=tok, expect=401)
    await api.request("DELETE", f"devices/{dev2}", {"auth": {
        "type": "m.login.password", "session": challenge["session"],
        "identifier": {"type": "m.id.user", "user": "alice"}, "password": "correct horse battery"}}, token=tok)
    assert alice in changed
    q = await api.post("keys/query", {"device_keys": {alice: []}}, token=tok)
    assert q["device_keys"][alice] == {}
    got = await api.post("keys/claim", {"one_time_keys": {alice: {dev2: "signed_curve25519"}}}, token=tok)
    assert got["one_time_keys"] == {}


async def test_deactivation_removes_keys(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    bob, btok, _ = await login_device(api, "bob")
    key = new_key(dev)
    await upload(api, tok, {"device_keys": device_keys(alice, dev, key),
                            "one_time_keys": {"signed_curve25519:A": otk(alice, key, 1)}})
    body, *_ = cs_keys(alice)
    await api.post("keys/device_signing/upload", body, token=tok)
    q = await api.post("keys/query", {"device_keys": {alice: []}}, token=btok)
    assert alice in q["master_keys"] and alice in q["self_signing_keys"]
    changed: list[str] = []

    async def listener(user_id: str) -> None:
        changed.append(user_id)

    api.hs.device_lists.on_change.append(listener)
    await api.hs.accounts.deactivate(alice)
    assert alice in changed
    q = await api.post("keys/query", {"device_keys": {alice: []}}, token=btok)
    assert q["device_keys"][alice] == {}
    # Its cross-signing identity went too: nothing vouches for a deactivated account.
    assert q.get("master_keys", {}) == {} and q.get("self_signing_keys", {}) == {}
    got = await api.post("keys/claim", {"one_time_keys": {alice: {dev: "signed_curve25519"}}}, token=btok)
    assert got["one_time_keys"] == {}


async def test_hostile_ids_in_upload_query_and_claim(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    bad = {"one_time_keys": {"signed_curve25519:A\u0000B": "key"}}
    assert (await upload(api, tok, bad, expect=400))["errcode"] == "M_INVALID_PARAM"
    claim = {"one_time_keys": {alice: {"D\u0000": "signed_curve25519", "x" * 5000: "a\u0000", dev: "y" * 5000},
                               "not a user id": {"D": "signed_curve25519"}}}
    assert await api.post("keys/claim", claim, token=tok) == {"one_time_keys": {}, "failures": {}}
    q = await api.post("keys/query", {"device_keys": {alice: ["D\u0000", "x" * 5000], "bogus": []}}, token=tok)
    assert q["device_keys"] == {alice: {}}
    for body in ({"device_keys": {alice: "all"}}, {"device_keys": []}, {}):
        status, err = await api.request("POST", "keys/query", body, token=tok, expect=None)
        assert status == 400, (body, err)
    status, _ = await api.request("POST", "keys/claim", {"one_time_keys": {alice: {dev: 5}}}, token=tok, expect=None)
    assert status == 400
