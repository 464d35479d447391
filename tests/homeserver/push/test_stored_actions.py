"""Stored push actions on both engines: what the event writer stores per member,
the unread counts and GET /notifications that read them, and what a redaction or
a receipt changes."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.push.actions import _NameIndex
from tests.conftest import Api
from tests.homeserver.api.reading_helpers import send, uid, user


@pytest.fixture
async def db_api(db_overrides: dict[str, Any], make_api: Any) -> Api:
    return await make_api(**db_overrides)  # type: ignore[no-any-return]


async def _room_of_three(api: Api) -> tuple[str, str, str, str]:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.post(f"rooms/{room}/join", {}, token=carol)
    return room, alice, bob, carol


async def _event_ids(api: Api, nids: list[int]) -> dict[int, str]:
    events = await api.hs.event_store.get_events_by_nid(nids)
    return {nid: e.event_id for nid, e in events.items()}


async def _rows(api: Api, user_id: str) -> list[tuple[Any, ...]]:
    """(event ID, highlight, thread) of the user's stored notifications, oldest first,
    own or room-wide (read as the e-mail notifier reads them)."""
    rows = await api.hs.push_actions.store.since(user_id, 0, 1000)
    ids = await _event_ids(api, [r.event_nid for r in rows])
    return [(ids[r.event_nid], int(r.highlight), r.thread_id) for r in rows]


async def test_rows_written_per_member_and_read_by_notifications(db_api: Api) -> None:
    api = db_api
    room, alice, bob, carol = await _room_of_three(api)
    first = await send(api, room, alice, "hello")
    notice = (await api.put(f"rooms/{room}/send/m.room.message/n1", {"msgtype": "m.notice", "body": "bot"},
                            token=alice))["event_id"]
    ping = await send(api, room, alice, "ping", **{"m.mentions": {"user_ids": [uid("bob")]}})
    own = await send(api, room, bob, "my own")

    # Stored at write time: bob has rows for alice's two notifying events, none for
    # the notice (suppressed) or his own; carol has both too but no highlight.
    assert await _rows(api, uid("bob")) == [(first, 0, "main"), (ping, 1, "main")]
    assert await _rows(api, uid("carol")) == [(first, 0, "main"), (ping, 0, "main"), (own, 0, "main")]
    assert notice not in [r[0] for r in await _rows(api, uid("alice"))]

    page = await api.get("notifications", token=bob)
    assert [n["event"]["event_id"] for n in page["notifications"]] == [ping, first]
    top = page["notifications"][0]
    assert top["room_id"] == room and top["read"] is False and isinstance(top["ts"], int)
    assert {"set_tweak": "highlight"} in top["actions"] and "notify" in top["actions"]
    assert "next_token" not in page

    only = await api.get("notifications?only=highlight", token=bob)
    assert [n["event"]["event_id"] for n in only["notifications"]] == [ping]

    # Paging with limit and next_token.
    one = await api.get("notifications?limit=1", token=bob)
    assert [n["event"]["event_id"] for n in one["notifications"]] == [ping]
    two = await api.get(f"notifications?limit=1&from={one['next_token']}", token=bob)
    assert [n["event"]["event_id"] for n in two["notifications"]] == [first]

    # A receipt marks what it covers read, and moves the unread count.
    await api.post(f"rooms/{room}/receipt/m.read/{first}", {}, token=bob)
    page = await api.get("notifications", token=bob)
    assert [n["read"] for n in page["notifications"]] == [False, True]
    sync = await api.get("sync", token=bob)
    assert sync["rooms"]["join"][room]["unread_notifications"] == {"notification_count": 1, "highlight_count": 1}

    # A redaction removes the notification and its count.
    await api.put(f"rooms/{room}/redact/{ping}/r1", {}, token=alice)
    assert await _rows(api, uid("bob")) == [(first, 0, "main")]
    sync = await api.get("sync", token=bob)
    assert sync["rooms"]["join"][room]["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert [n["event"]["event_id"] for n in (await api.get("notifications", token=bob))["notifications"]] == [first]


async def test_invites_notify_the_invitee(db_api: Api) -> None:
    api = db_api
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = (await api.post("createRoom", {"preset": "private_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/invite", {"user_id": uid("bob")}, token=alice)
    page = await api.get("notifications", token=bob)
    (note,) = page["notifications"]
    assert note["event"]["type"] == "m.room.member" and note["event"]["state_key"] == uid("bob")


@pytest.mark.parametrize("query", ["from=abc", "from=-1", "limit=-1", "limit=x", "from=99999999999999999999999"])
async def test_bad_parameters(api: Api, query: str) -> None:
    bob = await user(api, "bob")
    status, body = await api.request("GET", f"notifications?{query}", token=bob, expect=400)
    assert body["errcode"] == "M_INVALID_PARAM"


async def test_needs_auth(api: Api) -> None:
    status, body = await api.request("GET", "notifications", expect=401)
    assert body["errcode"] == "M_MISSING_TOKEN"


async def _notified(api: Api, event_id: str) -> dict[str, int]:
    """user -> highlight of every stored notification of one event, own or room-wide
    (read as push delivery reads them)."""
    stored = await api.hs.event_store.get_event(event_id)
    assert stored is not None
    users = [r[0] for r in await api.hs.db.fetchall("SELECT user_id FROM users")]
    found = await api.hs.push_actions.store.get_many((u, stored.nid) for u in users)
    return {u: int(row.highlight) for (u, _), row in found.items()}


async def test_defaults_evaluated_once_match_each_users_own_evaluation(db_api: Api) -> None:
    """Members who keep the default rules share one evaluation per event, and only those
    the event may name (display name, localpart, m.mentions) are evaluated one by one,
    with users who have rules of their own or an ignore list: each must still get
    exactly what their own rules say, also once memberships, names and power levels
    move (what is kept of the room between writes is dropped then)."""
    api = db_api
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "gina"]
    tokens = {n: await user(api, n) for n in names}
    alice = tokens["alice"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    for n in names[1:]:
        await api.post(f"rooms/{room}/join", {}, token=tokens[n])
    await api.put(f"profile/{uid('carol')}/displayname", {"displayname": "Carol Ann"}, token=tokens["carol"])
    await api.put(f"profile/{uid('frank')}/displayname", {"displayname": "Frañk"}, token=tokens["frank"])
    # dave: a rule of his own silencing "quiet"; erin ignores alice.
    await api.put("pushrules/global/content/hush", {"pattern": "quiet", "actions": []}, token=tokens["dave"])
    await api.put(f"user/{uid('erin')}/account_data/m.ignored_user_list",
                  {"ignored_users": {uid("alice"): {}}}, token=tokens["erin"])
    others = {uid(n) for n in names[2:]} | {uid("bob")}
    plain = {u: 0 for u in others - {uid("erin")}}

    assert await _notified(api, await send(api, room, alice, "hello")) == plain
    assert await _notified(api, await send(api, room, alice, "hey CAROL ann!")) == {**plain, uid("carol"): 1}
    assert await _notified(api, await send(api, room, alice, "ping Bob.")) == {**plain, uid("bob"): 1}
    assert await _notified(api, await send(api, room, alice, "bobby")) == plain  # not a word of its own
    assert await _notified(api, await send(api, room, alice, "FRAÑK, look")) == {**plain, uid("frank"): 1}
    assert await _notified(api, await send(api, room, alice, "so quiet")) == {
        u: h for u, h in plain.items() if u != uid("dave")
    }
    mention = {"m.mentions": {"user_ids": [uid("gina")]}}
    # With m.mentions the body's legacy rules are skipped: "bob" in the body names nobody.
    assert await _notified(api, await send(api, room, alice, "gina and bob", **mention)) == {**plain, uid("gina"): 1}
    assert await _notified(api, await send(api, room, alice, "@room wake up")) == {u: 1 for u in plain}
    notice = (await api.put(f"rooms/{room}/send/m.room.message/q1", {"msgtype": "m.notice", "body": "bob"},
                            token=alice))["event_id"]
    assert await _notified(api, notice) == {}
    # erin's own messages notify everyone else (nobody ignores her), her @room (power
    # level 0 of the 50 it needs) highlights nobody.
    from_erin = {u: 0 for u in others - {uid("erin")}} | {uid("alice"): 0}
    assert await _notified(api, await send(api, room, tokens["erin"], "@room hi")) == from_erin

    # The room's present moves: bob leaves, carol renames, @room needs level 0 only.
    await api.post(f"rooms/{room}/leave", {}, token=tokens["bob"])
    await api.put(f"profile/{uid('carol')}/displayname", {"displayname": "Lina"}, token=tokens["carol"])
    levels = await api.get(f"rooms/{room}/state/m.room.power_levels/", token=alice)
    await api.put(f"rooms/{room}/state/m.room.power_levels/", {**levels, "notifications": {"room": 0}},
                  token=alice)
    without_bob = {u: h for u, h in plain.items() if u != uid("bob")}
    assert await _notified(api, await send(api, room, alice, "lina? carol ann?")) == {**without_bob, uid("carol"): 1}
    assert await _notified(api, await send(api, room, tokens["erin"], "@room again")) == {
        u: 1 for u in from_erin if u != uid("bob")
    }
    # erin stops ignoring alice and is notified again.
    await api.put(f"user/{uid('erin')}/account_data/m.ignored_user_list", {"ignored_users": {}},
                  token=tokens["erin"])
    assert await _notified(api, await send(api, room, alice, "back")) == {**without_bob, uid("erin"): 0}


async def test_a_rule_change_is_seen_by_the_next_event(db_api: Api) -> None:
    """The writer evaluates each user's compiled ruleset, kept by the push rules
    service: every kind of change to the user's rules (a rule put, its actions or
    enabled flag changed, deleted; a server default's enabled flag or actions
    changed) drops it, so the very next event is evaluated against the change."""
    api = db_api
    room, alice, bob, _carol = await _room_of_three(api)
    bob_id, carol_id = uid("bob"), uid("carol")
    rules = api.hs.push_rules

    async def notified(body: str) -> dict[str, int]:
        return await _notified(api, await send(api, room, alice, body))

    mute = "pushrules/global/override/mute"
    await api.put(mute, {"conditions": [{"kind": "event_match", "key": "content.body", "pattern": "quiet"}],
                         "actions": []}, token=bob)
    assert await notified("hello") == {bob_id: 0, carol_id: 0}
    compiled = rules._cache[bob_id].compiled
    assert compiled is not None  # evaluated through the kept compiled ruleset
    assert await notified("quiet please") == {carol_id: 0}
    assert rules._cache[bob_id].compiled is compiled  # kept between events

    await api.put(f"{mute}/actions", {"actions": ["notify", {"set_tweak": "highlight"}]}, token=bob)
    assert await notified("quiet now") == {bob_id: 1, carol_id: 0}
    await api.put(f"{mute}/enabled", {"enabled": False}, token=bob)
    assert await notified("quiet again") == {bob_id: 0, carol_id: 0}
    await api.put(f"{mute}/enabled", {"enabled": True}, token=bob)
    assert await notified("quiet once more") == {bob_id: 1, carol_id: 0}
    await api.request("DELETE", mute, token=bob)
    assert await notified("quiet at last") == {bob_id: 0, carol_id: 0}

    # The server's defaults: .m.rule.message disabled, then its actions changed.
    await api.put("pushrules/global/underride/.m.rule.message/enabled", {"enabled": False}, token=bob)
    assert await notified("plain") == {carol_id: 0}
    await api.put("pushrules/global/underride/.m.rule.message/enabled", {"enabled": True}, token=bob)
    assert await notified("plain again") == {bob_id: 0, carol_id: 0}
    await api.put("pushrules/global/underride/.m.rule.message/actions",
                  {"actions": ["notify", {"set_tweak": "highlight"}]}, token=bob)
    assert await notified("plain, loud") == {bob_id: 1, carol_id: 0}

    # A content rule put before the next event.
    await api.put("pushrules/global/content/hush", {"pattern": "loud", "actions": []}, token=bob)
    assert await notified("too loud") == {carol_id: 0}


async def test_names_of_members_who_join_or_leave_after_a_message(db_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The members a message may name are looked up in an index kept with the room's
    members (push/actions.py `_NameIndex`), patched by each membership change: a
    member who joins after it was built is found by their name and localpart, one
    who renames by the new name, and one who left is no longer notified. (A room this
    small would take the pass over its members instead: the index is made to count
    as many members as a big room.)"""
    built = _NameIndex.__init__

    def as_big(self: _NameIndex, profiles: Any) -> None:
        built(self, profiles)
        self.size = 10**9

    monkeypatch.setattr(_NameIndex, "__init__", as_big)
    api = db_api
    room, alice, bob, carol = await _room_of_three(api)
    await send(api, room, alice, "hello")  # the index is built
    dave = await user(api, "dave")
    await api.put(f"profile/{uid('dave')}/displayname", {"displayname": "Dagobert"}, token=dave)
    await api.post(f"rooms/{room}/join", {}, token=dave)
    by_name = await send(api, room, alice, "hi dagobert")
    by_localpart = await send(api, room, alice, "hi dave")
    await api.put(f"rooms/{room}/state/m.room.member/{uid('carol')}",
                  {"membership": "join", "displayname": "Caroline"}, token=carol)
    by_new_name = await send(api, room, alice, "hi caroline")  # not her localpart as a word
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    gone = await send(api, room, alice, "hi bob")
    highlights = {r[0]: r[1] for r in await _rows(api, uid("dave"))}
    assert highlights[by_name] == 1 and highlights[by_localpart] == 1
    carol_rows = {r[0]: r[1] for r in await _rows(api, uid("carol"))}
    assert carol_rows[by_new_name] == 1
    assert gone not in [r[0] for r in await _rows(api, uid("bob"))]
