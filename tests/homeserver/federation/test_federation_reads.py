"""The federation read endpoints, served by one real Accord server (B) to another
(A) over TLS with signed requests: /event, /state, /state_ids, /event_auth,
/backfill, /get_missing_events, /query/profile, /query/directory, /publicRooms.

"A is in the room" is made real without federated joins: B persists an
m.room.member join for A's user through `RoomService.create_event` (the auth
rules allow it in a public room). That gives A's user a genuine membership in
the room state at every later event and in the memberships table, which is
exactly what the room gate and history visibility read. B signs that event
alone, so signature checks treat it apart (A's signature is absent).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from federation.client import RemoteError, quote_path_segment
from federation.events import (
    compute_auth_chain,
    compute_event_id,
    content_hash_matches,
    verify_event_signatures,
    verify_signed_by,
)
from federation.events.redaction import redact_event
from homeserver.federation import reads
from homeserver.rooms.creation import create_room
from homeserver.server import HomeServer
from homeserver.storage.events import StoredEvent
from homeserver.storage.rooms import RoomRecord
from tests.homeserver.federation.servers import ServerSpec, running_server
from tests.tls_ca import TestCA

V1 = "/_matrix/federation/v1"


@dataclass
class Peers:
    a: ServerSpec
    b: ServerSpec
    hs_a: HomeServer
    hs_b: HomeServer
    alice: str  # a user of B, creator of B's rooms
    bob: str  # a user of A

    async def get(self, path: str, **kwargs: Any) -> Any:
        """A signed GET from A to B."""
        assert self.hs_a.federation_client is not None
        return await self.hs_a.federation_client.get_json(self.b.name, path, **kwargs)

    async def post(self, path: str, content: Any, **kwargs: Any) -> Any:
        assert self.hs_a.federation_client is not None
        return await self.hs_a.federation_client.post_json(self.b.name, path, content, **kwargs)

    async def room(self, body: dict[str, Any] | None = None) -> RoomRecord:
        room_id = await create_room(self.hs_b, self.alice, {"preset": "public_chat", **(body or {})})
        return await self.hs_b.room_service.get_room(room_id)

    async def send(self, room: RoomRecord, body: str, sender: str | None = None) -> StoredEvent:
        return await self.hs_b.room_service.create_event(
            room, sender or self.alice, "m.room.message", {"msgtype": "m.text", "body": body}
        )

    async def state(self, room: RoomRecord, event_type: str, content: dict[str, Any], key: str = "") -> StoredEvent:
        return await self.hs_b.room_service.create_event(room, self.alice, event_type, content, state_key=key)

    async def bob_membership(self, room: RoomRecord, membership: str) -> StoredEvent:
        """A's user joins or leaves B's room (see the module docstring)."""
        return await self.hs_b.room_service.create_event(
            room, self.bob, "m.room.member", {"membership": membership}, state_key=self.bob
        )

    async def all_events(self, room: RoomRecord) -> list[StoredEvent]:
        """Every event of the room in stream order (B's rooms here are linear)."""
        return await self.hs_b.event_store.room_stream(
            room.room_nid, from_pos=0, to_pos=None, backwards=False, limit=10_000
        )

    def check_signed(self, pdu: dict[str, Any], room: RoomRecord, *, full: bool = True) -> None:
        """B's signature verifies and the content hash matches exactly when the
        event is served whole; A's users' events carry B's signature only."""
        keys = {self.b.name: {self.b.key_id: self.b.signing_key.verify_key}}
        assert "event_id" not in pdu and "hashes" in pdu and "signatures" in pdu
        if pdu["sender"].endswith(":" + self.a.name):
            verify_signed_by(redact_event(pdu, room.room_version), self.b.name, keys[self.b.name])
        else:
            verify_event_signatures(pdu, room.room_version, keys)
        assert content_hash_matches(pdu) is full


@contextlib.asynccontextmanager
async def peers(tmp_path: Path, ca: TestCA) -> AsyncIterator[Peers]:
    a, b = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    async with running_server(a, ca) as hs_a, running_server(b, ca) as hs_b:
        alice = f"@alice:{b.name}"
        await hs_b.registration.create_account(alice, None, login=False)
        yield Peers(a, b, hs_a, hs_b, alice, f"@bob:{a.name}")


async def expect_error(coro: Any, status: int, errcode: str) -> None:
    with pytest.raises(RemoteError) as err:
        await coro
    assert (err.value.status, err.value.errcode) == (status, errcode), err.value.message


def q(value: str) -> str:
    return quote_path_segment(value)


def state_before(events: list[StoredEvent], target: StoredEvent) -> set[str]:
    """The state before `target`, folded independently from a linear room's events."""
    state: dict[tuple[str, str], str] = {}
    for ev in events:
        if ev.event_id == target.event_id:
            return set(state.values())
        if ev.state_key is not None:
            state[(ev.type, ev.state_key)] = ev.event_id
    raise AssertionError("target not in the room")


def assert_auth_chain_closed(pdus: list[dict[str, Any]], chain: list[dict[str, Any]], rv: str) -> None:
    """Every auth event of every returned event (v12: and the create event) is in
    the chain, and the chain holds nothing beyond those auth events' closure."""
    by_id = {compute_event_id(p, rv): p for p in pdus + chain}
    chain_ids = {compute_event_id(p, rv) for p in chain}
    for pdu in by_id.values():
        assert set(pdu.get("auth_events", [])) <= chain_ids
        if pdu["type"] != "m.room.create":
            assert "$" + pdu["room_id"][1:] in chain_ids  # v12: the create event
    assert compute_auth_chain([compute_event_id(p, rv) for p in pdus], by_id, rv) == chain_ids


# --- /event ---


async def test_event_is_served_signed_in_federation_form(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        room = await p.room()
        await p.bob_membership(room, "join")
        msg = await p.send(room, "hello A")
        resp = await p.get(f"{V1}/event/{q(msg.event_id)}")
        assert resp["origin"] == p.b.name and isinstance(resp["origin_server_ts"], int)
        [pdu] = resp["pdus"]
        assert pdu["content"] == {"msgtype": "m.text", "body": "hello A"}
        assert compute_event_id(pdu, room.room_version) == msg.event_id
        p.check_signed(pdu, room)

        # A redacted event goes out redacted, still verifying.
        await p.hs_b.room_service.create_event(
            room, p.alice, "m.room.redaction", {"redacts": msg.event_id}, redacts=msg.event_id
        )
        [pdu] = (await p.get(f"{V1}/event/{q(msg.event_id)}"))["pdus"]
        assert pdu["content"] == {}
        p.check_signed(pdu, room, full=False)

        await expect_error(p.get(f"{V1}/event/{q('$nosuchevent')}"), 404, "M_NOT_FOUND")
        await expect_error(p.get(f"{V1}/event/notanid"), 400, "M_INVALID_PARAM")
        await expect_error(p.get(f"{V1}/event/{q(msg.event_id)}", signed=False), 401, "M_UNAUTHORIZED")


# --- the room gate ---


async def test_servers_not_in_the_room_are_refused_everywhere(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        room = await p.room()  # shared history, A has no member
        msg = await p.send(room, "not for A")
        rid, eid = q(room.room_id), q(msg.event_id)

        async def refused(status: int = 403, errcode: str = "M_FORBIDDEN", **kw: Any) -> None:
            for path in (
                f"{V1}/event/{eid}",
                f"{V1}/state/{rid}?event_id={eid}",
                f"{V1}/state_ids/{rid}?event_id={eid}",
                f"{V1}/event_auth/{rid}/{eid}",
                f"{V1}/backfill/{rid}?v={eid}&limit=10",
            ):
                await expect_error(p.get(path, **kw), status, errcode)
            await expect_error(
                p.post(f"{V1}/get_missing_events/{rid}", {"earliest_events": [], "latest_events": [msg.event_id]}, **kw),
                status, errcode,
            )

        await refused()
        await refused(401, "M_UNAUTHORIZED", signed=False)

        # Joined: allowed; after leaving: refused again.
        await p.bob_membership(room, "join")
        await p.get(f"{V1}/state_ids/{rid}?event_id={eid}")
        await p.bob_membership(room, "leave")
        await refused()

        # Joined but denied by the server ACL (matched without the port).
        await p.bob_membership(room, "join")
        await p.get(f"{V1}/event/{eid}")
        await p.state(room, "m.room.server_acl", {"allow": ["*"], "deny": [p.a.ip]})
        await refused()
        await p.state(room, "m.room.server_acl", {"allow": ["*"], "allow_ip_literals": False})
        await refused()
        await p.state(room, "m.room.server_acl", {"allow": ["127.0.0.*"]})
        await p.get(f"{V1}/event/{eid}")

        # A room that does not federate is never served, even when world readable
        # (the auth rules keep other servers' users from joining it at all).
        local = await p.room({"creation_content": {"m.federate": False}, "initial_state": [
            {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}
        ]})
        local_msg = await p.send(local, "internal")
        await expect_error(p.get(f"{V1}/event/{q(local_msg.event_id)}"), 403, "M_FORBIDDEN")

        # Unknown rooms are 404 on every room-scoped endpoint.
        nowhere = q("!nosuchroom:" + p.b.name)
        for path in (
            f"{V1}/state/{nowhere}?event_id={eid}",
            f"{V1}/state_ids/{nowhere}?event_id={eid}",
            f"{V1}/event_auth/{nowhere}/{eid}",
            f"{V1}/backfill/{nowhere}?v={eid}&limit=10",
        ):
            await expect_error(p.get(path), 404, "M_NOT_FOUND")
        await expect_error(
            p.post(f"{V1}/get_missing_events/{nowhere}", {"earliest_events": [], "latest_events": [msg.event_id]}),
            404, "M_NOT_FOUND",
        )


# --- /state, /state_ids, /event_auth ---


async def test_state_and_state_ids_at_an_event(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        room = await p.room({"name": "first name", "topic": "a topic"})
        await p.bob_membership(room, "join")
        await p.send(room, "one")
        await p.state(room, "m.room.name", {"name": "second name"})
        target = await p.send(room, "two", sender=p.bob)
        await p.state(room, "m.room.name", {"name": "third name"})  # after: must not show
        await p.state(room, "m.room.join_rules", {"join_rule": "invite"})
        events = await p.all_events(room)
        expected = state_before(events, target)
        rid, eid = q(room.room_id), q(target.event_id)

        resp = await p.get(f"{V1}/state/{rid}?event_id={eid}")
        rv = room.room_version
        got = {compute_event_id(pdu, rv) for pdu in resp["pdus"]}
        assert got == expected
        names = [pdu["content"]["name"] for pdu in resp["pdus"] if pdu["type"] == "m.room.name"]
        assert names == ["second name"]
        assert_auth_chain_closed(resp["pdus"], resp["auth_chain"], rv)
        for pdu in resp["pdus"] + resp["auth_chain"]:
            p.check_signed(pdu, room)

        ids = await p.get(f"{V1}/state_ids/{rid}?event_id={eid}")
        assert set(ids["pdu_ids"]) == expected and len(ids["pdu_ids"]) == len(expected)
        assert set(ids["auth_chain_ids"]) == {compute_event_id(x, rv) for x in resp["auth_chain"]}

        # The state before the create event is empty; before the first message it
        # holds the whole initial state.
        create = events[0]
        assert await p.get(f"{V1}/state_ids/{rid}?event_id={q(create.event_id)}") == {
            "pdu_ids": [], "auth_chain_ids": []
        }

        other = await p.room()
        await p.bob_membership(other, "join")
        elsewhere = await p.send(other, "other room")
        for path in ("state", "state_ids"):
            await expect_error(p.get(f"{V1}/{path}/{rid}"), 400, "M_MISSING_PARAM")
            await expect_error(p.get(f"{V1}/{path}/{rid}?event_id=nope"), 400, "M_INVALID_PARAM")
            await expect_error(p.get(f"{V1}/{path}/{rid}?event_id={q('$unknown')}"), 404, "M_NOT_FOUND")
            # An event of another room is not found *in this room*.
            await expect_error(
                p.get(f"{V1}/{path}/{rid}?event_id={q(elsewhere.event_id)}"), 404, "M_NOT_FOUND"
            )


async def test_event_auth_returns_the_full_auth_chain(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        room = await p.room()
        await p.bob_membership(room, "join")
        await p.state(room, "m.room.power_levels", {"users": {p.bob: 50}, "events_default": 0})
        target = await p.send(room, "authorised", sender=p.bob)
        events = await p.all_events(room)
        rv = room.room_version
        everything = {ev.event_id: ev.event for ev in events}
        expected = compute_auth_chain([target.event_id], everything, rv)

        resp = await p.get(f"{V1}/event_auth/{q(room.room_id)}/{q(target.event_id)}")
        got = [compute_event_id(pdu, rv) for pdu in resp["auth_chain"]]
        assert set(got) == expected and len(got) == len(expected)
        assert target.event_id not in got
        # Both power level events (the second one's auth cites the first) and both joins.
        assert sum(pdu["type"] == "m.room.power_levels" for pdu in resp["auth_chain"]) == 2
        assert {pdu["state_key"] for pdu in resp["auth_chain"] if pdu["type"] == "m.room.member"} == {
            p.alice, p.bob
        }
        for pdu in resp["auth_chain"]:
            p.check_signed(pdu, room)

        rid = q(room.room_id)
        await expect_error(p.get(f"{V1}/event_auth/{rid}/{q('$unknown')}"), 404, "M_NOT_FOUND")
        await expect_error(p.get(f"{V1}/event_auth/{rid}/nope"), 400, "M_INVALID_PARAM")


# --- /backfill, /get_missing_events ---


async def _chain(p: Peers, n: int) -> tuple[RoomRecord, list[StoredEvent]]:
    room = await p.room()
    await p.bob_membership(room, "join")
    return room, [await p.send(room, f"m{i}") for i in range(n)]


async def test_backfill_walks_back_from_the_given_events(
    tmp_path: Path, ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with peers(tmp_path, ca) as p:
        room, m = await _chain(p, 10)
        rid, rv = q(room.room_id), room.room_version

        async def backfill(v: list[str], limit: int | str) -> list[str]:
            resp = await p.get(f"{V1}/backfill/{rid}", query={"v": v, "limit": str(limit)})
            assert resp["origin"] == p.b.name
            for pdu in resp["pdus"]:
                p.check_signed(pdu, room)
            return [compute_event_id(pdu, rv) for pdu in resp["pdus"]]

        ids = [e.event_id for e in m]
        assert await backfill([ids[7]], 3) == [ids[7], ids[6], ids[5]]
        # Two starting points: the deepest events behind both, each once.
        assert await backfill([ids[3], ids[7]], 6) == [ids[7], ids[6], ids[5], ids[4], ids[3], ids[2]]
        # Unknown starting points are skipped when another is known.
        assert await backfill([ids[2], "$unknown"], 2) == [ids[2], ids[1]]
        # A large limit reaches the create event and stops there.
        everything = [e.event_id for e in await p.all_events(room)]
        upto = everything[: everything.index(ids[4]) + 1]
        assert await backfill([ids[4]], 100) == list(reversed(upto))
        assert await backfill([ids[4]], 0) == []
        # The server bounds the walk whatever the requester asks for.
        monkeypatch.setattr(reads, "MAX_BACKFILL", 4)
        assert len(await backfill([ids[9]], 50)) == 4

        other, _ = await _chain(p, 1)
        foreign = (await p.all_events(other))[-1].event_id
        await expect_error(p.get(f"{V1}/backfill/{rid}?limit=5"), 400, "M_MISSING_PARAM")
        await expect_error(p.get(f"{V1}/backfill/{rid}?v={q(ids[3])}"), 400, "M_MISSING_PARAM")
        await expect_error(p.get(f"{V1}/backfill/{rid}?v={q(ids[3])}&limit=x"), 400, "M_INVALID_PARAM")
        await expect_error(p.get(f"{V1}/backfill/{rid}?v={q(ids[3])}&limit=-1"), 400, "M_INVALID_PARAM")
        await expect_error(p.get(f"{V1}/backfill/{rid}?v=nope&limit=5"), 400, "M_INVALID_PARAM")
        await expect_error(p.get(f"{V1}/backfill/{rid}?v={q('$unknown')}&limit=5"), 404, "M_NOT_FOUND")
        await expect_error(p.get(f"{V1}/backfill/{rid}?v={q(foreign)}&limit=5"), 404, "M_NOT_FOUND")


async def test_get_missing_events(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        room, m = await _chain(p, 10)
        rid, rv = q(room.room_id), room.room_version
        ids = [e.event_id for e in m]

        async def missing(body: dict[str, Any]) -> list[str]:
            resp = await p.post(f"{V1}/get_missing_events/{rid}", body)
            for pdu in resp["events"]:
                p.check_signed(pdu, room)
            return [compute_event_id(pdu, rv) for pdu in resp["events"]]

        # Between what A has (m5) and what it got (m9), oldest first; neither end returned.
        assert await missing({"earliest_events": [ids[5]], "latest_events": [ids[9]]}) == ids[6:9]
        # The limit keeps the events closest to latest_events.
        assert await missing({"earliest_events": [ids[2]], "latest_events": [ids[9]], "limit": 2}) == ids[7:9]
        # min_depth cuts the walk off.
        depth = m[6].event["depth"]
        assert await missing(
            {"earliest_events": [], "latest_events": [ids[9]], "min_depth": depth}
        ) == ids[6:9]
        # The default limit is 10.
        assert len(await missing({"earliest_events": [], "latest_events": [ids[9]]})) == 10
        assert await missing({"earliest_events": [], "latest_events": [ids[9]], "limit": 0}) == []

        path = f"{V1}/get_missing_events/{rid}"
        await expect_error(p.post(path, {"earliest_events": []}), 400, "M_MISSING_PARAM")
        await expect_error(p.post(path, {"latest_events": [ids[9]]}), 400, "M_MISSING_PARAM")
        await expect_error(p.post(path, {"earliest_events": "x", "latest_events": [ids[9]]}), 400, "M_BAD_JSON")
        await expect_error(p.post(path, {"earliest_events": [1], "latest_events": [ids[9]]}), 400, "M_INVALID_PARAM")
        await expect_error(
            p.post(path, {"earliest_events": [], "latest_events": [ids[9]], "limit": -1}), 400, "M_INVALID_PARAM"
        )
        await expect_error(
            p.post(path, {"earliest_events": [], "latest_events": [ids[9]], "min_depth": "x"}), 400, "M_INVALID_PARAM"
        )
        await expect_error(p.post(path, {"earliest_events": [], "latest_events": ["$unknown"]}), 404, "M_NOT_FOUND")


# --- history visibility ---


async def test_history_the_server_may_not_see_is_served_redacted(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        room = await p.room({"initial_state": [
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
        ]})
        secret = await p.send(room, "before A joined")
        join = await p.bob_membership(room, "join")
        seen = await p.send(room, "after A joined")
        rid, rv = q(room.room_id), room.room_version

        resp = await p.get(f"{V1}/backfill/{rid}", query={"v": [seen.event_id], "limit": "3"})
        by_id = {compute_event_id(pdu, rv): pdu for pdu in resp["pdus"]}
        assert list(by_id) == [seen.event_id, join.event_id, secret.event_id]
        assert by_id[seen.event_id]["content"]["body"] == "after A joined"
        p.check_signed(by_id[seen.event_id], room)
        assert by_id[join.event_id]["content"]["membership"] == "join"  # visible: state after
        assert by_id[secret.event_id]["content"] == {}
        p.check_signed(by_id[secret.event_id], room, full=False)  # still verifies

        [pdu] = (await p.get(f"{V1}/event/{q(secret.event_id)}"))["pdus"]
        assert pdu["content"] == {} and compute_event_id(pdu, rv) == secret.event_id
        gme = await p.post(
            f"{V1}/get_missing_events/{rid}", {"earliest_events": [], "latest_events": [seen.event_id]}
        )
        withheld = [e for e in gme["events"] if compute_event_id(e, rv) == secret.event_id]
        assert withheld and withheld[0]["content"] == {}


async def test_invited_history_is_served_from_the_invite_on(tmp_path: Path, ca: TestCA) -> None:
    """`invited`: what a server's user saw from their invite on is served whole, not what
    came before (the server's memberships at each event decide, not its being in the
    room now, as in a `shared` room)."""
    async with peers(tmp_path, ca) as p:
        room = await p.room({"initial_state": [
            {"type": "m.room.history_visibility", "content": {"history_visibility": "invited"}}
        ]})
        secret = await p.send(room, "before A's user was invited")
        await p.hs_b.room_service.create_event(
            room, p.alice, "m.room.member", {"membership": "invite"}, state_key=p.bob
        )
        invited = await p.send(room, "while A's user was invited")
        await p.bob_membership(room, "join")
        seen = await p.send(room, "after A's user joined")
        rid, rv = q(room.room_id), room.room_version
        resp = await p.get(f"{V1}/backfill/{rid}", query={"v": [seen.event_id], "limit": "5"})
        by_id = {compute_event_id(pdu, rv): pdu for pdu in resp["pdus"]}
        assert by_id[seen.event_id]["content"]["body"] == "after A's user joined"
        assert by_id[invited.event_id]["content"]["body"] == "while A's user was invited"
        assert by_id[secret.event_id]["content"] == {}


async def test_world_readable_rooms_are_readable_by_any_server(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        room = await p.room({"initial_state": [
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
        ]})
        early = await p.send(room, "members only")
        opened = await p.state(room, "m.room.history_visibility", {"history_visibility": "world_readable"})
        late = await p.send(room, "for everyone")
        rid, rv = q(room.room_id), room.room_version

        # A has no member, but the room is world readable now.
        [pdu] = (await p.get(f"{V1}/event/{q(late.event_id)}"))["pdus"]
        assert pdu["content"]["body"] == "for everyone"
        resp = await p.get(f"{V1}/backfill/{rid}", query={"v": [late.event_id], "limit": "3"})
        got = {compute_event_id(x, rv): x for x in resp["pdus"]}
        assert got[late.event_id]["content"]["body"] == "for everyone"
        assert got[opened.event_id]["content"]["history_visibility"] == "world_readable"
        assert got[early.event_id]["content"] == {}
        state = await p.get(f"{V1}/state_ids/{rid}?event_id={q(late.event_id)}")
        assert opened.event_id in state["pdu_ids"]
        # Where A may not see the event, it may not see the state there either.
        await expect_error(p.get(f"{V1}/state_ids/{rid}?event_id={q(early.event_id)}"), 403, "M_FORBIDDEN")
        await expect_error(p.get(f"{V1}/event_auth/{rid}/{q(early.event_id)}"), 403, "M_FORBIDDEN")

        # Closed again: A, not in the room, is refused outright.
        await p.state(room, "m.room.history_visibility", {"history_visibility": "shared"})
        await expect_error(p.get(f"{V1}/event/{q(late.event_id)}"), 403, "M_FORBIDDEN")


# --- queries ---


async def test_profile_query(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        await p.hs_b.users.set_profile_field(p.alice, "displayname", "Alice B")
        await p.hs_b.users.set_profile_field(p.alice, "m.tz", "Europe/Paris")
        path = f"{V1}/query/profile"
        assert await p.get(path, query={"user_id": p.alice}) == {"displayname": "Alice B", "m.tz": "Europe/Paris"}
        assert await p.get(path, query={"user_id": p.alice, "field": "displayname"}) == {"displayname": "Alice B"}
        await expect_error(p.get(path, query={"user_id": p.alice, "field": "avatar_url"}), 404, "M_NOT_FOUND")
        await expect_error(p.get(path, query={"user_id": f"@nobody:{p.b.name}"}), 404, "M_NOT_FOUND")
        await expect_error(p.get(path, query={"user_id": p.bob}), 404, "M_NOT_FOUND")  # not B's user
        await expect_error(p.get(path, query={"user_id": "alice"}), 400, "M_INVALID_PARAM")
        await expect_error(p.get(path), 400, "M_MISSING_PARAM")
        await expect_error(p.get(path, query={"user_id": p.alice}, signed=False), 401, "M_UNAUTHORIZED")


async def test_directory_query(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        room = await p.room()
        await p.bob_membership(room, "join")
        alias = f"#lobby:{p.b.name}"
        await p.hs_b.aliases.create_alias(p.alice, alias, room.room_id)
        path = f"{V1}/query/directory"
        resp = await p.get(path, query={"room_alias": alias})
        assert resp == {"room_id": room.room_id, "servers": [p.b.name, p.a.name]}
        await expect_error(p.get(path, query={"room_alias": f"#none:{p.b.name}"}), 404, "M_NOT_FOUND")
        await expect_error(p.get(path, query={"room_alias": f"#lobby:{p.a.name}"}), 404, "M_NOT_FOUND")
        await expect_error(p.get(path, query={"room_alias": "lobby"}), 400, "M_INVALID_PARAM")
        await expect_error(p.get(path), 400, "M_MISSING_PARAM")
        await expect_error(p.get(path, query={"room_alias": alias}, signed=False), 401, "M_UNAUTHORIZED")


async def test_public_rooms(tmp_path: Path, ca: TestCA) -> None:
    async with peers(tmp_path, ca) as p:
        big = await p.room({"name": "Big room", "visibility": "public"})
        await p.bob_membership(big, "join")
        small = await p.room({"name": "Small room", "topic": "quiet", "visibility": "public"})
        await p.room({"name": "Unlisted"})  # not published
        path = f"{V1}/publicRooms"

        listing = await p.get(path)
        assert [r["room_id"] for r in listing["chunk"]] == [big.room_id, small.room_id]
        assert listing["chunk"][0]["num_joined_members"] == 2
        assert listing == await p.hs_b.public_rooms.public_rooms(limit=None, since=None)

        first = await p.get(path, query={"limit": "1"})
        assert [r["room_id"] for r in first["chunk"]] == [big.room_id]
        second = await p.get(path, query={"limit": "1", "since": first["next_batch"]})
        assert [r["room_id"] for r in second["chunk"]] == [small.room_id] and "next_batch" not in second

        found = await p.post(path, {"filter": {"generic_search_term": "QUIET"}})
        assert [r["room_id"] for r in found["chunk"]] == [small.room_id]
        paged = await p.post(path, {"limit": 1, "since": first["next_batch"]})
        assert [r["room_id"] for r in paged["chunk"]] == [small.room_id]

        await expect_error(p.get(path, query={"limit": "x"}), 400, "M_INVALID_PARAM")
        await expect_error(p.get(path, query={"since": "garbage"}), 400, "M_INVALID_PARAM")
        await expect_error(
            p.get(path, query={"include_all_networks": "true", "third_party_instance_id": "irc"}),
            400, "M_INVALID_PARAM",
        )
        await expect_error(p.post(path, {"limit": "x"}), 400, "M_INVALID_PARAM")
        await expect_error(p.get(path, signed=False), 401, "M_UNAUTHORIZED")
