"""The media admin API (Synapse's), media removed with a purged room or an erased
user, the retention job, and avatars that resolve through the media endpoints."""

from __future__ import annotations

from tests.conftest import Api, ClientFactory, FakeClock
from tests.homeserver.api.admin.helpers import (
    V1,
    assert_refused_to_non_admins,
    make_admin,
    make_room,
    make_user,
)
from tests.homeserver.media.helpers import V1 as MEDIA
from tests.homeserver.media.helpers import fetch, png, upload_ok


async def test_list_delete_and_quarantine(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    server, first = await upload_ok(api, alice, b"one", "text/plain", "one.txt")
    _, second = await upload_ok(api, alice, b"two!", "text/plain")
    path = V1 + "/users/@alice:test.local/media"
    await assert_refused_to_non_admins(api, "GET", path, alice)
    listed = await api.get(path, token=admin)
    assert listed["total"] == 2
    assert [m["media_id"] for m in listed["media"]] == [first, second]
    assert listed["media"][0]["upload_name"] == "one.txt" and listed["media"][0]["media_length"] == 3
    page = await api.get(path + "?limit=1&order_by=media_length&dir=b", token=admin)
    assert [m["media_id"] for m in page["media"]] == [second] and page["next_token"] == 1
    info = (await api.get(V1 + f"/media/{server}/{first}", token=admin))["media_info"]
    assert info["media_length"] == 3 and info["user_id"] == "@alice:test.local" and info["upload_name"] == "one.txt"
    await api.request("GET", V1 + f"/media/{server}/nosuchmedia", token=admin, expect=404)
    # Quarantined: 404 to users, listed as such, and released again.
    assert await api.post(V1 + f"/media/quarantine/{server}/{first}", {}, token=admin) == {}
    status, _, _ = await fetch(api, f"{MEDIA}/download/{server}/{first}", alice)
    assert status == 404
    listed = await api.get(path, token=admin)
    assert listed["media"][0]["quarantined_by"] == "@root:test.local"
    await api.post(V1 + f"/media/unquarantine/{server}/{first}", {}, token=admin)
    status, _, _ = await fetch(api, f"{MEDIA}/download/{server}/{first}", alice)
    assert status == 200
    # Deleted: gone, with its file.
    assert await api.request("DELETE", V1 + f"/media/{server}/{second}", token=admin) == (
        200, {"deleted_media": [second], "total": 1})
    status, _, _ = await fetch(api, f"{MEDIA}/download/{server}/{second}", alice)
    assert status == 404
    _, err = await api.request("DELETE", V1 + f"/media/{server}/{second}", token=admin, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("DELETE", V1 + f"/media/other.example/{second}", token=admin, expect=400)
    await assert_refused_to_non_admins(api, "DELETE", V1 + f"/media/{server}/{first}", alice)


async def test_room_media_quarantine_and_purge(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    server, image = await upload_ok(api, alice, png(40, 40), "image/png")
    _, avatar = await upload_ok(api, alice, png(20, 20), "image/png")
    _, unrelated = await upload_ok(api, alice, b"elsewhere")
    room = await make_room(api, alice)
    await api.put(f"rooms/{room}/send/m.room.message/t1",
                  {"msgtype": "m.image", "body": "i.png", "url": f"mxc://{server}/{image}"}, token=alice)
    await api.put(f"rooms/{room}/state/m.room.avatar", {"url": f"mxc://{server}/{avatar}"}, token=alice)
    listed = await api.get(V1 + f"/room/{room}/media", token=admin)
    assert sorted(listed["local"]) == sorted([f"mxc://{server}/{image}", f"mxc://{server}/{avatar}"])
    body = await api.post(V1 + f"/room/{room}/media/quarantine", {}, token=admin)
    assert body == {"num_quarantined": 2}
    for media_id in (image, avatar):
        status, _, _ = await fetch(api, f"{MEDIA}/download/{server}/{media_id}", alice)
        assert status == 404
    # Purging the room deletes the local media its events mention.
    await api.request("DELETE", V1 + f"/rooms/{room}", {"purge": True, "force_purge": True}, token=admin)
    assert await api.hs.media.store.get(server, image) is None
    assert await api.hs.media.store.get(server, avatar) is None
    assert await api.hs.media.store.get(server, unrelated) is not None


async def test_erasing_a_user_deletes_their_media(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    server, media_id = await upload_ok(api, alice, b"mine")
    bob = await make_user(api, "bob")
    _, bobs = await upload_ok(api, bob, b"bob's")
    await api.post(V1 + "/deactivate/@alice:test.local", {"erase": True}, token=admin)
    assert await api.hs.media.store.get(server, media_id) is None
    status, _, _ = await fetch(api, f"{MEDIA}/download/{server}/{bobs}", bob)
    assert status == 200


async def test_purge_media_cache_and_retention(make_api: ClientFactory) -> None:
    clock = FakeClock()
    api = await make_api(clock=clock, media={"local_retention_ms": 10_000, "remote_cache_retention_ms": 5_000})
    admin = await make_admin(api)

    async def chunks():
        yield b"remote bytes"

    await api.hs.media.store_remote("remote.example", "cachedone", "text/plain", None, chunks(), 100)
    assert await api.hs.media.get_cached_remote("remote.example", "cachedone") is not None
    _, err = await api.request("POST", V1 + "/purge_media_cache", {}, token=admin, expect=400)
    body = await api.post(V1 + f"/purge_media_cache?before_ts={clock.now_ms - 1}", {}, token=admin)
    assert body == {"deleted": 0}
    clock.advance(1000)
    body = await api.post(V1 + f"/purge_media_cache?before_ts={clock.now_ms}", {}, token=admin)
    assert body == {"deleted": 1}
    assert await api.hs.media.get_cached_remote("remote.example", "cachedone") is None
    # The periodic job: local media unread for longer than its retention goes.
    alice = await make_user(api, "alice")
    server, old = await upload_ok(api, alice, b"old")
    clock.advance(8000)
    _, fresh = await upload_ok(api, alice, b"fresh")
    status, _, _ = await fetch(api, f"{MEDIA}/download/{server}/{old}", alice)  # read: kept
    clock.advance(8000)
    _, unread = await upload_ok(api, alice, b"unread")
    clock.advance(11000)
    status, _, _ = await fetch(api, f"{MEDIA}/download/{server}/{unread}", alice)
    result = await api.hs.media.cleanup_once()
    assert result["local"] == 2  # old (read 19 s ago) and fresh (never read, 19 s old)
    assert await api.hs.media.store.get(server, unread) is not None


async def test_avatars_are_mxc_uris_served_by_the_repository(api: Api) -> None:
    alice = await make_user(api, "alice")
    bob = await make_user(api, "bob")
    face = png(64, 64, "green")
    server, media_id = await upload_ok(api, alice, face, "image/png", "face.png")
    mxc = f"mxc://{server}/{media_id}"
    await api.put("profile/@alice:test.local/avatar_url", {"avatar_url": mxc}, token=alice)
    got = (await api.get("profile/@alice:test.local", token=bob))["avatar_url"]
    got_server, got_id = got.removeprefix("mxc://").split("/")
    status, headers, body = await fetch(api, f"{MEDIA}/download/{got_server}/{got_id}", bob)
    assert status == 200 and body == face and headers["Content-Type"] == "image/png"
    status, _, _ = await fetch(api, f"{MEDIA}/thumbnail/{got_server}/{got_id}", bob, {"width": "32", "height": "32", "method": "crop"})
    assert status == 200
    for bad in ("mxc://test.local/../etc", "mxc://test.local/a/b", "mxc:///x", "mxc://test.local/a%2Fb"):
        _, err = await api.request("PUT", "profile/@alice:test.local/avatar_url", {"avatar_url": bad},
                                   token=alice, expect=400)
        assert err["errcode"] == "M_BAD_JSON"
    room = await make_room(api, alice)
    await api.put(f"rooms/{room}/state/m.room.avatar", {"url": mxc}, token=alice)
    state = await api.get(f"rooms/{room}/state/m.room.avatar", token=alice)
    assert state["url"] == mxc
    _, err = await api.request("PUT", f"rooms/{room}/state/m.room.avatar", {"url": "https://x/y.png"},
                               token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"


async def test_the_media_tables_on_both_engines(db_overrides: dict, make_api: ClientFactory) -> None:
    clock = FakeClock()
    api = await make_api(clock=clock, **db_overrides)
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    server, media_id = await upload_ok(api, alice, png(100, 80), "image/png", "p.png")
    status, _, body = await fetch(api, f"{MEDIA}/thumbnail/{server}/{media_id}", alice,
                                  {"width": "32", "height": "32", "method": "crop"})
    assert status == 200
    created = await api.post("/_matrix/media/v1/create", {}, token=alice)
    pending = created["content_uri"].rsplit("/", 1)[1]
    await api.request("PUT", f"/_matrix/media/v3/upload/{server}/{pending}", data=b"later", token=alice)
    room = await make_room(api, alice)
    await api.put(f"rooms/{room}/state/m.room.avatar", {"url": f"mxc://{server}/{media_id}"}, token=alice)
    assert (await api.post(V1 + f"/room/{room}/media/quarantine", {}, token=admin)) == {"num_quarantined": 1}
    listed = await api.get(V1 + "/users/@alice:test.local/media?order_by=media_length&dir=b", token=admin)
    assert listed["total"] == 2 and listed["media"][0]["media_id"] == media_id
    assert listed["media"][0]["quarantined_by"] == "@root:test.local"
    await fetch(api, f"{MEDIA}/download/{server}/{pending}", alice)
    await api.hs.media.flush_accesses()
    assert (await api.hs.media.store.get(server, pending)).last_access_ts == clock.now_ms
    assert await api.hs.media.cleanup_once() == {"lapsed_ids": 0, "local": 0, "remote": 0}
