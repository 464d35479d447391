"""Cross-signing: POST /keys/device_signing/upload and /keys/signatures/upload,
with real ed25519 keys, and what /keys/query then serves."""

from __future__ import annotations

from typing import Any

from tests.conftest import PASSWORD, Api
from tests.homeserver.e2ee.keyhelpers import (
    cs_key,
    cs_keys,
    device_keys,
    login_device,
    named,
    new_key,
    public,
    signed,
)


async def upload_cs(api: Api, token: str, body: dict[str, Any], expect: int = 200) -> Any:
    return (await api.request("POST", "keys/device_signing/upload", body, token=token, expect=expect))[1]


def password_auth(session: str, user: str) -> dict[str, Any]:
    return {"type": "m.login.password", "session": session,
            "identifier": {"type": "m.id.user", "user": user}, "password": PASSWORD}


async def test_first_upload_without_auth_then_auth_to_replace(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    bob, btok, _ = await login_device(api, "bob")
    body, master, *_ = cs_keys(alice)
    assert await upload_cs(api, tok, body) == {}
    # The same keys again: no auth needed.
    assert await upload_cs(api, tok, body) == {}
    q = await api.post("keys/query", {"device_keys": {alice: []}}, token=tok)
    assert q["master_keys"][alice] == master
    assert alice in q["self_signing_keys"] and alice in q["user_signing_keys"]
    # Others see the master and self-signing keys, never the user-signing key.
    q = await api.post("keys/query", {"device_keys": {alice: []}}, token=btok)
    assert alice in q["master_keys"] and alice in q["self_signing_keys"] and q["user_signing_keys"] == {}
    # New keys need user-interactive auth.
    body2, master2, *_ = cs_keys(alice)
    challenge = await upload_cs(api, tok, body2, expect=401)
    assert {"stages": ["m.login.password"]} in challenge["flows"]
    body2["auth"] = password_auth(challenge["session"], "alice")
    assert await upload_cs(api, tok, body2) == {}
    q = await api.post("keys/query", {"device_keys": {alice: []}}, token=btok)
    assert q["master_keys"][alice] == master2


async def test_hostile_cross_signing_keys(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    bob, _, _ = await login_device(api, "bob")
    body, master, msk, ssk, usk = cs_keys(alice)
    # A self-signing key not signed by the master key.
    bad = dict(body, self_signing_key=signed(cs_key(alice, "self_signing", ssk), alice, named(new_key("x"))))
    assert (await upload_cs(api, tok, bad, expect=400))["errcode"] == "M_INVALID_SIGNATURE"
    # Keys naming another user, the wrong usage, a key ID that is not its key.
    assert (await upload_cs(api, tok, {"master_key": cs_key(bob, "master", msk)}, expect=400))["errcode"] == "M_INVALID_PARAM"
    assert (await upload_cs(api, tok, {"master_key": cs_key(alice, "self_signing", msk)}, expect=400))["errcode"] == "M_INVALID_PARAM"
    wrong_id = {"user_id": alice, "usage": ["master"], "keys": {"ed25519:abc": public(msk)}}
    assert (await upload_cs(api, tok, {"master_key": wrong_id}, expect=400))["errcode"] == "M_INVALID_PARAM"
    # A self-signing key without any master key.
    only_ssk = {"self_signing_key": body["self_signing_key"]}
    assert (await upload_cs(api, tok, only_ssk, expect=400))["errcode"] == "M_MISSING_PARAM"
    q = await api.post("keys/query", {"device_keys": {alice: []}}, token=tok)
    assert q["master_keys"] == {}


async def test_signatures_upload(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    bob, btok, bdev = await login_device(api, "bob")
    dkey = new_key(dev)
    dk = device_keys(alice, dev, dkey)
    await api.post("keys/upload", {"device_keys": dk}, token=tok)
    body, master, msk, ssk, usk = cs_keys(alice)
    await upload_cs(api, tok, body)
    bbody, bmaster, bmsk, bssk, busk = cs_keys(bob)
    await upload_cs(api, btok, bbody)
    # Alice's self-signing key signs her device; her device signs her master key.
    dev_signed = signed(dk, alice, ssk)
    master_signed = signed(master, alice, dkey)
    bad_dev = signed(dk, alice, named(new_key("z")))  # not her self-signing key
    res = await api.post("keys/signatures/upload", {alice: {dev: dev_signed, public(msk): master_signed}}, token=tok)
    assert res == {"failures": {}}
    res = await api.post("keys/signatures/upload", {alice: {dev: bad_dev}}, token=tok)
    assert res["failures"][alice][dev]["errcode"] == "M_INVALID_SIGNATURE"
    # A signature on a key that is not the stored one.
    altered = signed(dict(dk, algorithms=["other"]), alice, ssk)
    res = await api.post("keys/signatures/upload", {alice: {dev: altered}}, token=tok)
    assert res["failures"][alice][dev]["errcode"] == "M_INVALID_SIGNATURE"
    res = await api.post("keys/signatures/upload", {alice: {"NODEVICE": signed(dict(dk, device_id="NODEVICE"), alice, ssk)}}, token=tok)
    assert res["failures"][alice]["NODEVICE"]["errcode"] == "M_NOT_FOUND"
    q = await api.post("keys/query", {"device_keys": {alice: [dev]}}, token=btok)
    sigs = q["device_keys"][alice][dev]["signatures"][alice]
    assert sigs[f"ed25519:{public(ssk)}"] == dev_signed["signatures"][alice][f"ed25519:{public(ssk)}"]
    assert f"ed25519:{public(named(new_key('z')))}" not in sigs
    assert f"ed25519:{dev}" in q["master_keys"][alice]["signatures"][alice]
    # Alice's user-signing key signs Bob's master key: only Alice sees that signature.
    bob_signed = signed(bmaster, alice, usk)
    res = await api.post("keys/signatures/upload", {bob: {public(bmsk): bob_signed}}, token=tok)
    assert res == {"failures": {}}
    q = await api.post("keys/query", {"device_keys": {bob: []}}, token=tok)
    assert f"ed25519:{public(usk)}" in q["master_keys"][bob]["signatures"][alice]
    q = await api.post("keys/query", {"device_keys": {bob: []}}, token=btok)
    assert alice not in q["master_keys"][bob].get("signatures", {})
    # Signed by the wrong key, or a key that is not Bob's master key, or a remote user's.
    res = await api.post("keys/signatures/upload", {bob: {public(bmsk): signed(bmaster, alice, ssk)}}, token=tok)
    assert res["failures"][bob][public(bmsk)]["errcode"] == "M_INVALID_SIGNATURE"
    res = await api.post("keys/signatures/upload", {bob: {"notakey": signed(bmaster, alice, usk)}}, token=tok)
    assert res["failures"][bob]["notakey"]["errcode"] == "M_NOT_FOUND"
    far = "@far:remote.example"
    res = await api.post("keys/signatures/upload", {far: {"k": signed({"user_id": far}, alice, usk)}}, token=tok)
    assert res["failures"][far]["k"]["errcode"] == "M_NOT_FOUND"


async def test_cross_signing_changes_mark_the_device_list(api: Api) -> None:
    alice, tok, dev = await login_device(api, "alice")
    dkey = new_key(dev)
    dk = device_keys(alice, dev, dkey)
    await api.post("keys/upload", {"device_keys": dk}, token=tok)
    changed: list[str] = []

    async def listener(user_id: str) -> None:
        changed.append(user_id)

    api.hs.device_lists.on_change.append(listener)
    body, master, msk, ssk, usk = cs_keys(alice)
    await upload_cs(api, tok, body)
    assert changed == [alice]
    await upload_cs(api, tok, body)  # the same keys: nothing changed
    assert changed == [alice]
    await api.post("keys/signatures/upload", {alice: {dev: signed(dk, alice, ssk)}}, token=tok)
    assert changed == [alice, alice]
    # A rejected signature changes nothing.
    await api.post("keys/signatures/upload", {alice: {dev: signed(dk, alice, usk)}}, token=tok)
    assert changed == [alice, alice]


async def test_signing_another_users_master_key_tells_only_the_signer(api: Api) -> None:
    """Alice verifies Bob: her /sync and /keys/changes name Bob (her view of his keys
    changed); Carol, who shares the room, is told nothing, since she is never shown
    that signature; and no change of Bob's own devices is announced."""
    alice, tok, _ = await login_device(api, "alice")
    bob, btok, _ = await login_device(api, "bob")
    carol, ctok, _ = await login_device(api, "carol")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=tok))["room_id"]
    for t in (btok, ctok):
        await api.post(f"join/{room}", {}, token=t)
    body, _, _, _, usk = cs_keys(alice)
    await upload_cs(api, tok, body)
    bbody, bmaster, bmsk, _, _ = cs_keys(bob)
    await upload_cs(api, btok, bbody)
    await api.hs.device_lists.drain()
    since = {t: (await api.get("sync?timeout=0", token=t))["next_batch"] for t in (tok, btok, ctok)}
    announced: list[str] = []
    api.hs.device_lists.local_listeners.append(announced.append)

    res = await api.post("keys/signatures/upload", {bob: {public(bmsk): signed(bmaster, alice, usk)}}, token=tok)
    assert res == {"failures": {}}

    def changed(sync: dict[str, Any]) -> list[str]:
        return list(sync.get("device_lists", {}).get("changed", []))

    mine = await api.get(f"sync?timeout=0&since={since[tok]}", token=tok)
    assert bob in changed(mine)
    carols = await api.get(f"sync?timeout=0&since={since[ctok]}", token=ctok)
    assert bob not in changed(carols)
    assert bob not in changed(await api.get(f"sync?timeout=0&since={since[btok]}", token=btok))
    to = {tok: mine["next_batch"], ctok: carols["next_batch"]}
    for t, told in ((tok, True), (ctok, False)):
        keys_changes = await api.get(f"keys/changes?from={since[t]}&to={to[t]}", token=t)
        assert (bob in keys_changes["changed"]) is told
    assert announced == []  # Bob's devices did not change: no other server is told
