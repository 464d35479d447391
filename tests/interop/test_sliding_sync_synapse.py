"""Simplified sliding sync (MSC4186) answered alike by Accord and by stock Synapse.

The same scripted history is made on an Accord (the `accord` command) and on a stock
Synapse (which serves MSC4186 by default), each with its own users, then the same
sliding sync requests go to both, and the fields the MSC defines are compared after
naming what cannot be equal alike: room and event IDs (by the order they were made),
server names, and stream positions (`bump_stamp` is compared as the order it puts
rooms in; `pos` and `prev_batch` by being usable). `notification_count` and
`highlight_count` are left out: Synapse always sends 0 there, Accord the real counts.
"""

from __future__ import annotations

import itertools
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.server_process import ServerProcess

from .synapse import SynapseServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
Call = Callable[[str, str, Any, str], Awaitable[Any]]


class Side:
    """One server under the script: its users, rooms and events named by role."""

    def __init__(self, call: Call, register: Callable[[str], Awaitable[tuple[str, str, str]]]) -> None:
        self.call = call
        self._register = register
        self.tokens: dict[str, str] = {}
        self.user_ids: dict[str, str] = {}
        self.device_ids: dict[str, str] = {}
        self.rooms: dict[str, str] = {}
        self.events: dict[str, str] = {}
        self._txn = itertools.count()

    async def register(self, name: str) -> None:
        self.tokens[name], self.user_ids[name], self.device_ids[name] = await self._register(name)

    async def as_(self, who: str, method: str, path: str, body: Any = None) -> Any:
        if not path.startswith("/_"):
            path = "/_matrix/client/v3" + path
        return await self.call(method, path, body, self.tokens[who])

    async def create(self, who: str, label: str, **body: Any) -> str:
        body.setdefault("room_version", "11")
        room = (await self.as_(who, "POST", "/createRoom", body))["room_id"]
        self.rooms[label] = room
        return room

    async def send(self, who: str, label: str, text: str) -> None:
        room = _q(self.rooms[label])
        res = await self.as_(who, "PUT", f"/rooms/{room}/send/m.room.message/d{next(self._txn)}", {"msgtype": "m.text", "body": text})
        self.events[text] = res["event_id"]

    def normalise(self, obj: Any) -> Any:
        """IDs and server names replaced by the script's labels, so both sides compare."""
        names = {v: f"<room {k}>" for k, v in self.rooms.items()}
        names |= {v: f"<user {k}>" for k, v in self.user_ids.items()}
        names |= {v: f"<event {k}>" for k, v in self.events.items()}

        def walk(o: Any) -> Any:
            if isinstance(o, dict):
                return {walk(k): walk(v) for k, v in o.items()}
            if isinstance(o, list):
                return [walk(v) for v in o]
            if isinstance(o, str):
                return names.get(o, o)
            return o

        return walk(obj)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


async def script(side: Side) -> None:
    """The shared history: rooms named and not, a DM, an encrypted room, a space with a
    child, an invite, a kick, a tag, and messages in a known order."""
    for name in ("alice", "bob", "carol"):
        await side.register(name)
    bob, carol = side.user_ids["bob"], side.user_ids["carol"]
    await side.as_("bob", "PUT", f"/profile/{_q(bob)}/displayname", {"displayname": "Bob B"})
    named = await side.create("alice", "named", name="Named room", topic="a topic", invite=[bob])
    await side.as_("bob", "POST", f"/rooms/{_q(named)}/join", {})
    dm = await side.create("alice", "dm", invite=[bob], is_direct=True)
    await side.as_("bob", "POST", f"/rooms/{_q(dm)}/join", {})
    await side.as_("alice", "PUT", f"/user/{_q(side.user_ids['alice'])}/account_data/m.direct", {bob: [dm]})
    await side.create("alice", "encrypted", name="Secret", initial_state=[
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
    ])
    space = await side.create("alice", "space", name="Space", creation_content={"type": "m.space"})
    await side.as_("alice", "PUT", f"/rooms/{_q(space)}/state/m.space.child/{_q(named)}", {"via": ["example.org"]})
    invited = await side.create("carol", "invite", name="Carol's", invite=[side.user_ids["alice"]])
    assert invited
    kicked = await side.create("bob", "kicked", name="Kicked from", invite=[side.user_ids["alice"]])
    await side.as_("alice", "POST", f"/rooms/{_q(kicked)}/join", {})
    await side.as_("bob", "POST", f"/rooms/{_q(kicked)}/kick", {"user_id": side.user_ids["alice"]})
    await side.as_("alice", "PUT", f"/user/{_q(side.user_ids['alice'])}/rooms/{_q(named)}/tags/m.favourite", {"order": 0.5})
    for label, text in (("encrypted", "e1"), ("named", "n1"), ("dm", "d1"), ("named", "n2"), ("dm", "d2")):
        await side.send("bob" if label != "encrypted" else "alice", label, text)
    assert carol


def _request() -> dict[str, Any]:
    rs = [["m.room.name", ""], ["m.room.topic", ""], ["m.room.member", "$LAZY"], ["m.room.create", ""]]
    # Lists that share rooms are ordered so that a room's config does not depend on
    # Synapse's handling of overlaps (a room in two lists carries the union of the
    # two configs; Synapse also lends that union to the rooms after it in the later
    # list, which Accord does not copy).
    return {
        "lists": {
            "no_space": {"ranges": [[0, 9]], "timeline_limit": 0, "required_state": [], "filters": {"not_room_types": ["m.space"]}},
            "invites": {"ranges": [[0, 9]], "timeline_limit": 0, "required_state": [], "filters": {"is_invite": True}},
            "spaces": {"ranges": [[0, 9]], "timeline_limit": 0, "required_state": [], "filters": {"room_types": ["m.space"]}},
            "fav": {"ranges": [[0, 9]], "timeline_limit": 0, "required_state": [], "filters": {"tags": ["m.favourite"]}},
            "dms": {"ranges": [[0, 9]], "timeline_limit": 1, "required_state": [], "filters": {"is_dm": True}},
            "enc": {"ranges": [[0, 9]], "timeline_limit": 1, "required_state": [], "filters": {"is_encrypted": True}},
            "recent": {"ranges": [[0, 2]], "timeline_limit": 3, "required_state": rs},
        },
        "room_subscriptions": {},
        "extensions": {
            "to_device": {"enabled": True}, "e2ee": {"enabled": True},
            "account_data": {"enabled": True}, "typing": {"enabled": True}, "receipts": {"enabled": True},
        },
    }


def _event(e: dict[str, Any]) -> tuple[Any, ...]:
    content = e.get("content", {})
    return (e["type"], e.get("state_key"), e["sender"], content.get("body") or content.get("membership") or content.get("name"))


def comparable(resp: dict[str, Any]) -> dict[str, Any]:
    """The MSC's fields of a response, in a form both servers can match."""
    lists = {}
    for key, value in resp.get("lists", {}).items():
        ids = [rid for op in value["ops"] for rid in op["room_ids"]]
        # Synapse does not sort a window that holds the whole list: compare those as sets.
        lists[key] = {"count": value["count"], "rooms": ids if len(ids) < value["count"] else sorted(ids)}
    stamps = {rid: r["bump_stamp"] for rid, r in resp["rooms"].items() if "bump_stamp" in r}
    rooms = {}
    for rid, r in resp["rooms"].items():
        entry: dict[str, Any] = {k: r[k] for k in (
            "name", "avatar", "initial", "limited", "num_live", "joined_count", "invited_count", "is_dm",
        ) if k in r}
        entry["heroes"] = r.get("heroes")
        entry["timeline"] = [_event(e) for e in r.get("timeline", [])]
        entry["required_state"] = sorted(_event(e) for e in r.get("required_state", []))
        entry["invite_state"] = sorted(str(_event({**e, "sender": e.get("sender")})) for e in r.get("invite_state", []))
        entry["has_prev_batch"] = "prev_batch" in r
        entry["has_bump_stamp"] = "bump_stamp" in r
        rooms[rid] = entry
    ext = resp.get("extensions", {})
    extensions = {
        "to_device": [(e["type"], e["sender"], e["content"]) for e in ext.get("to_device", {}).get("events", [])],
        "device_lists": ext.get("e2ee", {}).get("device_lists"),
        "account_data_rooms": {rid: sorted(e["type"] for e in evs) for rid, evs in ext.get("account_data", {}).get("rooms", {}).items()},
        "typing": ext.get("typing"),
        "receipt_rooms": sorted(ext.get("receipts", {}).get("rooms", {})),
    }
    return {
        "lists": lists, "rooms": rooms, "extensions": extensions,
        "bump_order": sorted(stamps, key=lambda rid: -stamps[rid]),
    }


async def sliding(side: Side, body: dict[str, Any], pos: str | None = None) -> dict[str, Any]:
    q = f"?timeout=0{'&pos=' + _q(pos) if pos else ''}"
    return dict(await side.as_("alice", "POST", PATH + q, body))


async def run(side: Side) -> list[dict[str, Any]]:
    """The requests, in order; each answer kept raw (normalised)."""
    await script(side)
    answers = []
    first = await sliding(side, _request())
    answers.append(first)
    # Incremental: a message in a room below the window, a tag change, a typing
    # notice, a to-device message and a receipt; the room moves into the window.
    alice = side.user_ids["alice"]
    await side.send("bob", "named", "n3")
    await side.as_("bob", "PUT", f"/rooms/{_q(side.rooms['dm'])}/typing/{_q(side.user_ids['bob'])}", {"typing": True, "timeout": 30000})
    await side.as_("bob", "PUT", "/sendToDevice/m.test/x1", {"messages": {alice: {side.device_ids["alice"]: {"n": 1}}}})
    await side.as_("bob", "POST", f"/rooms/{_q(side.rooms['named'])}/receipt/m.read/{_q(side.events['n3'])}", {})
    second = await sliding(side, _request(), first["pos"])
    answers.append(second)
    # The room subscription of a room outside every window, with its own state.
    sub = _request()
    sub["room_subscriptions"] = {
        # Two events: alice's join and her kick. Before them, the servers read the room's
        # creation differently (Synapse folds `initial_state` into the preset's events,
        # Accord sends both as the spec lists them), and a member who left is shown
        # `shared` history by the spec's rule, which Synapse narrows.
        side.rooms["kicked"]: {"timeline_limit": 2, "required_state": [["m.room.name", ""], ["m.room.member", "$ME"]]},
        side.rooms["space"]: {"timeline_limit": 10, "required_state": [["m.space.child", "*"], ["m.room.member", "$LAZY"]]},
    }
    third = await sliding(side, sub, second["pos"])
    answers.append(third)
    # Every prev_batch pages on with /messages.
    for resp in answers:
        for rid, r in resp["rooms"].items():
            if "prev_batch" in r:
                page = await side.as_("alice", "GET", f"/rooms/{_q(rid)}/messages?dir=b&limit=5&from={_q(r['prev_batch'])}")
                assert "chunk" in page
    return [side.normalise(a) for a in answers]


async def test_same_answers_as_synapse(synapse: SynapseServer, tmp_path: Path) -> None:
    accord = ServerProcess(tmp_path / "accord")
    await accord.start()
    try:
        async with aiohttp.ClientSession() as session:

            async def accord_call(method: str, path: str, body: Any, token: str) -> Any:
                async with session.request(method, accord.client_url + path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
                    data = await r.json()
                    assert r.status == 200, (method, path, r.status, data)
                    return data

            async def accord_register(name: str) -> tuple[str, str, str]:
                url = accord.client_url + "/_matrix/client/v3/register"
                body: dict[str, Any] = {"username": name, "password": "diff-password-1"}
                async with session.post(url, json=body) as r:
                    body["auth"] = {"type": "m.login.dummy", "session": (await r.json())["session"]}
                async with session.post(url, json=body) as r:
                    data = await r.json()
                return data["access_token"], data["user_id"], data["device_id"]

            async def synapse_call(method: str, path: str, body: Any, token: str) -> Any:
                return await synapse.request(method, path, body, token=token)

            suffix = re.sub(r"\W", "", tmp_path.name)[-8:]

            async def synapse_register(name: str) -> tuple[str, str, str]:
                user = await synapse.register_user(f"{name}{suffix}", "diff-password-1")
                return user.access_token, user.user_id, user.device_id

            ours = await run(Side(accord_call, accord_register))
            theirs = await run(Side(synapse_call, synapse_register))
    finally:
        await accord.stop()
    differences = [
        f"request {step}: {path}: accord {mine!r} != synapse {other!r}"
        for step, (a, s) in enumerate(zip(ours, theirs, strict=True))
        for path, mine, other in _diff(comparable(a), comparable(s))
    ]
    assert not differences, "\n".join(differences)


def _diff(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys(), key=str) for d in _diff(a.get(k), b.get(k), f"{path}/{k}")]
    return [] if a == b else [(path, a, b)]
