"""A room's whole life shared between Accord and stock Synapse, in room versions 10, 11 and 12,
hosted by each side in turn: messages (order kept), state changes (topic, name, power levels
changed by the other side's user once granted power, display names), typing and read receipts
both ways (private receipts never cross), redactions, and a leave, a kick and a ban by either
side's moderator, each seen by both servers; then a guest server whose only member left, or was
kicked, rejoining over federation and catching up with what it missed.

Everything goes through the client-server API of each server, ours included (``ClientAPI``), so
the test checks what a user of either server would see: typing and receipts in the other
side's /sync ``ephemeral``, the rest in /sync timelines, /state, /event and /messages. One room
per (version, host) carries the whole story, which keeps the module's runtime to a few joins.
Federation is asynchronous, so every cross-server expectation is polled up to a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from tests.interop.test_federation_basics import Accord, accord  # noqa: F401  (fixture)
from tests.tls_ca import TestCA

from .synapse import ClientAPI, MatrixError, SynapseClient, SynapseServer, SynapseUser

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "interop password 3"
WITHIN = 30.0  # seconds any one cross-server expectation may take
# Every event of a sync, never a "limited" timeline with a gap in the middle.
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 100}}})

T = TypeVar("T")


@dataclass
class Side:
    """One server's users in the shared room: the moderator and two others."""

    label: str
    server_name: str
    mod: SynapseClient
    second: SynapseClient
    third: SynapseClient


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sides(
    accord: Accord, synapse: SynapseServer, ca: TestCA  # noqa: F811
) -> AsyncIterator[dict[str, Side]]:
    """Three users on each server, shared by every room of the module (each test's room is
    new, so what happened in another one cannot leak into its assertions)."""
    synapse_users = []
    for localpart in ("smod", "ssecond", "sthird"):
        client = synapse.client(await synapse.register_user(localpart, PASSWORD))
        await client.set_displayname(f"{localpart} of Synapse")
        synapse_users.append(client)
    async with ClientAPI(f"https://{accord.name}", ca.ca_path) as api:
        accord_users = []
        for localpart in ("amod", "asecond", "athird"):
            user_id = f"@{localpart}:{accord.name}"
            session = await accord.hs.registration.create_account(
                user_id, PASSWORD, displayname=f"{localpart} of Accord"
            )
            user = SynapseUser(user_id, session["access_token"], session["device_id"])
            accord_users.append(SynapseClient(api, user))
        yield {
            "synapse": Side("synapse", synapse.server_name, *synapse_users),
            "accord": Side("accord", accord.name, *accord_users),
        }


# --- polling ---------------------------------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[T]], what: str, within: float = WITHIN) -> T:
    """``check()``'s result once it stops failing (AssertionError, or an error answer such as
    the 404 of an event not arrived yet); fails with the last failure after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except (AssertionError, MatrixError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not so within {within}s; last: {e}") from e
        await asyncio.sleep(0.1)


class Feed:
    """One user's /sync, read incrementally from when ``start`` was called and kept: what the
    timelines and the ephemeral sections of every response held, per room, in order."""

    def __init__(self, client: SynapseClient) -> None:
        self.client = client
        self.since: str | None = None
        self.timeline: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.ephemeral: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.left: dict[str, list[dict[str, Any]]] = defaultdict(list)  # rooms.leave timelines

    async def start(self) -> Feed:
        self.since = (await self.client.sync(filter=SYNC_FILTER))["next_batch"]
        return self

    async def wait(self, predicate: Callable[[], bool], what: str, within: float = WITHIN) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.client.user_id} did not see {what} within {within}s; ephemeral events"
                    f" seen: {dict(self.ephemeral)}"
                )
            response = await self.client.sync(
                self.since, timeout_ms=int(min(left, 2) * 1000), filter=SYNC_FILTER
            )
            self.since = response["next_batch"]
            for room_id, room in response.get("rooms", {}).get("join", {}).items():
                self.timeline[room_id] += room.get("timeline", {}).get("events", [])
                self.ephemeral[room_id] += room.get("ephemeral", {}).get("events", [])
            for room_id, room in response.get("rooms", {}).get("leave", {}).items():
                self.left[room_id] += room.get("timeline", {}).get("events", [])

    def bodies(self, room_id: str) -> list[str]:
        return [
            e["content"]["body"] for e in self.timeline[room_id]
            if e["type"] == "m.room.message" and "body" in e["content"]
        ]

    def typing(self, room_id: str, default: set[str] | None = None) -> set[str]:
        """Who is typing as of the latest m.typing seen (``default``, or no one, if none was)."""
        latest = [e for e in self.ephemeral[room_id] if e["type"] == "m.typing"]
        return set(latest[-1]["content"]["user_ids"]) if latest else (default or set())

    def receipts(self, room_id: str) -> set[tuple[str, str, str]]:
        """Every (event ID, receipt type, user ID) seen in the room's m.receipt events."""
        return set(self.receipt_data(room_id))

    def receipt_data(self, room_id: str) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The latest receipt body (``ts``, ``thread_id``) per (event ID, type, user ID)."""
        return {
            (event_id, receipt_type, user_id): body
            for e in self.ephemeral[room_id] if e["type"] == "m.receipt"
            for event_id, by_type in e["content"].items()
            for receipt_type, by_user in by_type.items()
            for user_id, body in by_user.items()
        }


# --- what each side's moderator can see -------------------------------------------------------


async def state_event(client: SynapseClient, room_id: str, event_type: str, state_key: str) -> dict[str, Any]:
    """The whole current state event (sender included), from /state."""
    for event in await client.state(room_id):
        if (event["type"], event.get("state_key")) == (event_type, state_key):
            return event
    raise AssertionError(f"{client.user_id} has no {event_type} {state_key!r} in {room_id}")


async def both_see_state(
    observers: list[SynapseClient], room_id: str, event_type: str, state_key: str,
    content: dict[str, Any], sender: str,
) -> None:
    for observer in observers:
        async def check(observer: SynapseClient = observer) -> None:
            event = await state_event(observer, room_id, event_type, state_key)
            assert (event["sender"], event["content"]) == (sender, content), event
        await eventually(check, f"{observer.user_id} sees {event_type} {state_key!r} = {content}")


async def both_see_membership(
    observers: list[SynapseClient], room_id: str, user_id: str, membership: str, sender: str,
) -> None:
    for observer in observers:
        async def check(observer: SynapseClient = observer) -> None:
            event = await state_event(observer, room_id, "m.room.member", user_id)
            assert (event["content"]["membership"], event["sender"]) == (membership, sender), event
        await eventually(check, f"{observer.user_id} sees {user_id} {membership} by {sender}")


async def both_see_redacted(
    observers: list[SynapseClient], room_id: str, event_id: str, redaction_id: str
) -> None:
    for observer in observers:
        async def check(observer: SynapseClient = observer) -> None:
            event = await observer.event(room_id, event_id)
            assert event["content"] == {}, event
            because = event.get("unsigned", {}).get("redacted_because", {})
            assert because.get("event_id") == redaction_id, event
        await eventually(check, f"{observer.user_id} sees {event_id} redacted by {redaction_id}")


async def joined(client: SynapseClient, room_id: str) -> set[str]:
    path = f"/rooms/{room_id}/joined_members"
    return set((await client.request("GET", path))["joined"])


async def message_ids(client: SynapseClient, room_id: str) -> list[str]:
    """The room's m.room.message event IDs in /messages order, oldest first."""
    chunk = (await client.messages(room_id, limit=200))["chunk"]
    return [e["event_id"] for e in reversed(chunk) if e["type"] == "m.room.message"]


# --- the test ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["synapse", "accord"], ids=["synapse-hosts", "accord-hosts"])
@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_shared_room(sides: dict[str, Side], host: str, version: str) -> None:
    h = sides[host]
    g = sides["accord" if host == "synapse" else "synapse"]
    observers = [h.mod, g.mod]
    h_feed, g_feed, kicked_feed = await asyncio.gather(
        Feed(h.mod).start(), Feed(g.mod).start(), Feed(g.second).start()
    )

    # -- the room, created on the host; everyone joins (the guests over federation) --
    room_id = await h.mod.create_room(
        preset="public_chat", room_version=version, name=f"{h.label} v{version}"
    )
    for guest in (g.mod, g.second, g.third):
        assert await guest.join(room_id, via=[h.server_name]) == room_id
    for local in (h.second, h.third):
        assert await local.join(room_id) == room_id
    everyone = {c.user_id for c in (h.mod, h.second, h.third, g.mod, g.second, g.third)}
    for observer in observers:
        async def all_joined(observer: SynapseClient = observer) -> None:
            assert await joined(observer, room_id) == everyone
        await eventually(all_joined, f"{observer.user_id} sees all six joined")

    # -- messages: a causal ping-pong (one global order), then both sides at once --
    ping_pong = []
    for i in range(3):
        for sender, feed in ((h.mod, g_feed), (g.mod, h_feed)):
            body = f"{version} {host} ping-pong {i} from {sender.user_id}"
            await sender.send_text(room_id, body)
            ping_pong.append(body)
            await feed.wait(lambda body=body, feed=feed: body in feed.bodies(room_id), repr(body))
    bursts = {
        c.user_id: [f"{version} {host} burst {i} from {c.user_id}" for i in range(5)]
        for c in (h.second, g.second)
    }

    async def burst(client: SynapseClient) -> None:
        for body in bursts[client.user_id]:
            await client.send_text(room_id, body)

    await asyncio.gather(burst(h.second), burst(g.second))
    sent = set(ping_pong) | {b for bodies in bursts.values() for b in bodies}
    for feed in (h_feed, g_feed):
        await feed.wait(lambda feed=feed: sent <= set(feed.bodies(room_id)), "every message")
        seen = feed.bodies(room_id)
        assert len(seen) == len(set(seen)), f"duplicates in {feed.client.user_id}'s timeline: {seen}"
        assert [b for b in seen if b in ping_pong] == ping_pong, seen
        for bodies in bursts.values():
            assert [b for b in seen if b in bodies] == bodies, seen
    # The servers' histories (/messages): the same messages, in an order that keeps causality.
    histories = await asyncio.gather(*(message_ids(c, room_id) for c in observers))
    assert set(histories[0]) == set(histories[1]), histories
    assert len(histories[0]) == len(set(histories[0])) == len(sent), histories
    by_id = {e["event_id"]: e["content"]["body"] for e in h_feed.timeline[room_id]
             if e["type"] == "m.room.message"}
    for history in histories:
        bodies_in_history = [by_id[event_id] for event_id in history]
        assert [b for b in bodies_in_history if b in ping_pong] == ping_pong
        for bodies in bursts.values():
            assert [b for b in bodies_in_history if b in bodies] == bodies

    # -- state: topic by the host, power granted to the guest moderator, who then uses it --
    topic = {"topic": f"hosted by {h.label}"}
    await h.mod.send_state(room_id, "m.room.topic", topic)
    await both_see_state(observers, room_id, "m.room.topic", "", topic, h.mod.user_id)

    levels = await h.mod.state_event(room_id, "m.room.power_levels")
    levels["users"] = {**levels["users"], g.mod.user_id: 100}
    await h.mod.send_state(room_id, "m.room.power_levels", levels)
    await both_see_state(observers, room_id, "m.room.power_levels", "", levels, h.mod.user_id)

    name = {"name": f"renamed by {g.label}"}
    await g.mod.send_state(room_id, "m.room.name", name)
    await both_see_state(observers, room_id, "m.room.name", "", name, g.mod.user_id)
    levels = {
        **levels,
        "users": {**levels["users"], h.third.user_id: 10, g.third.user_id: 20},
        "events": {**levels["events"], "org.accord.interop": 30},
    }
    await g.mod.send_state(room_id, "m.room.power_levels", levels)
    await both_see_state(observers, room_id, "m.room.power_levels", "", levels, g.mod.user_id)

    # -- display names: a profile change re-sends the member event into the room --
    for client in (h.second, g.second):
        new_name = f"{client.user_id} renamed in {version}"
        await client.set_displayname(new_name)
        member = {"membership": "join", "displayname": new_name}
        for observer in observers:
            async def renamed(observer: SynapseClient = observer, client: SynapseClient = client,
                              member: dict[str, Any] = member) -> None:
                event = await state_event(observer, room_id, "m.room.member", client.user_id)
                assert {k: event["content"].get(k) for k in member} == member, event
            await eventually(renamed, f"{observer.user_id} sees {client.user_id} renamed")

    # -- typing, both ways: start and stop, in the other side's /sync ephemeral --
    for typist, feed in ((h.mod, g_feed), (g.mod, h_feed)):
        await typist.typing(room_id, True, timeout_ms=30_000)
        await feed.wait(lambda t=typist.user_id, feed=feed: t in feed.typing(room_id),
                        f"{typist.user_id} typing")
        await typist.typing(room_id, False)
        await feed.wait(lambda t=typist.user_id, feed=feed: t not in feed.typing(room_id, default={t}),
                        f"{typist.user_id} stop typing")

    # -- read receipts, both ways: m.read crosses, m.read.private never does --
    for reader, own_feed, other_feed, other in ((h.mod, h_feed, g_feed, g), (g.mod, g_feed, h_feed, h)):
        privately, publicly = (
            await other.mod.send_text(room_id, f"read privately by {reader.user_id}"),
            await other.mod.send_text(room_id, f"read publicly by {reader.user_id}"),
        )
        for feed in (own_feed, other_feed):
            await feed.wait(lambda feed=feed, e=publicly: any(
                x["event_id"] == e for x in feed.timeline[room_id]), "the messages to read")
        await reader.receipt(room_id, privately, "m.read.private")
        await reader.receipt(room_id, publicly, "m.read")
        await other_feed.wait(
            lambda f=other_feed, e=publicly, u=reader.user_id: (e, "m.read", u) in f.receipts(room_id),
            f"{reader.user_id}'s m.read",
        )
        await own_feed.wait(
            lambda f=own_feed, e=privately, u=reader.user_id:
                (e, "m.read.private", u) in f.receipts(room_id),
            f"{reader.user_id}'s own m.read.private",
        )
        leaked = {
            r for r in other_feed.receipts(room_id)
            if r[2] == reader.user_id and (r[1] == "m.read.private" or r[0] == privately)
        }
        assert not leaked, f"a private receipt crossed to {other_feed.client.user_id}: {leaked}"
        body = other_feed.receipt_data(room_id)[(publicly, "m.read", reader.user_id)]
        assert isinstance(body.get("ts"), int) and "thread_id" not in body, body
        # A threaded receipt keeps its thread ID on the way.
        later = await other.mod.send_text(room_id, f"read in the main thread by {reader.user_id}")
        await own_feed.wait(lambda f=own_feed, e=later: any(
            x["event_id"] == e for x in f.timeline[room_id]), "the message to read")
        await reader.receipt(room_id, later, "m.read", thread_id="main")
        await other_feed.wait(
            lambda f=other_feed, e=later, u=reader.user_id: (e, "m.read", u) in f.receipts(room_id),
            f"{reader.user_id}'s threaded m.read",
        )
        body = other_feed.receipt_data(room_id)[(later, "m.read", reader.user_id)]
        assert body.get("thread_id") == "main", body

    # -- redactions: of one's own message, and of the other side's by each moderator --
    redactions = []
    own = await g.second.send_text(room_id, "redacted by its sender")
    redactions.append((own, g.second))
    by_guest_mod = await h.second.send_text(room_id, "redacted by the guest moderator")
    redactions.append((by_guest_mod, g.mod))
    by_host_mod = await g.third.send_text(room_id, "redacted by the host moderator")
    redactions.append((by_host_mod, h.mod))
    for event_id, redacter in redactions:
        for observer in observers:  # the redacter's server must have the event to redact it
            await eventually(lambda o=observer, e=event_id: o.event(room_id, e), "the message")
        redaction_id = await redacter.redact(room_id, event_id, reason="interop")
        await both_see_redacted(observers, room_id, event_id, redaction_id)

    # -- membership: kick, leave and ban, by either side's moderator --
    await h.mod.kick(room_id, g.second.user_id, reason="kicked by the host")
    await both_see_membership(observers, room_id, g.second.user_id, "leave", h.mod.user_id)
    # The kicked user's own server tells them: the room moves to their /sync's rooms.leave.
    await kicked_feed.wait(lambda: any(
        e["type"] == "m.room.member" and e.get("state_key") == g.second.user_id
        and e["sender"] == h.mod.user_id and e["content"].get("reason") == "kicked by the host"
        for e in kicked_feed.left[room_id]
    ), "their kick in rooms.leave")
    await g.second.join(room_id, via=[h.server_name])
    await both_see_membership(observers, room_id, g.second.user_id, "join", g.second.user_id)
    await g.second.leave(room_id)
    await both_see_membership(observers, room_id, g.second.user_id, "leave", g.second.user_id)

    await g.mod.kick(room_id, h.second.user_id, reason="kicked by the guest")
    await both_see_membership(observers, room_id, h.second.user_id, "leave", g.mod.user_id)
    await h.second.join(room_id)
    await both_see_membership(observers, room_id, h.second.user_id, "join", h.second.user_id)
    await h.second.leave(room_id)
    await both_see_membership(observers, room_id, h.second.user_id, "leave", h.second.user_id)

    await g.mod.ban(room_id, h.second.user_id, reason="banned by the guest")
    await both_see_membership(observers, room_id, h.second.user_id, "ban", g.mod.user_id)
    await h.mod.ban(room_id, g.third.user_id, reason="banned by the host")
    await both_see_membership(observers, room_id, g.third.user_id, "ban", h.mod.user_id)
    with pytest.raises(MatrixError) as refused:
        await g.third.join(room_id, via=[h.server_name])
    assert refused.value.status == 403

    # -- in the end both servers agree on the room's whole current state --
    remaining = {h.mod.user_id, h.third.user_id, g.mod.user_id}

    async def agree() -> None:
        states = [
            {(e["type"], e["state_key"]): e["event_id"] for e in await observer.state(room_id)}
            for observer in observers
        ]
        assert states[0] == states[1], states
        for observer in observers:
            assert await joined(observer, room_id) == remaining

    await eventually(agree, "both servers agree on the current state")


@pytest.mark.parametrize("host", ["synapse", "accord"], ids=["synapse-hosts", "accord-hosts"])
@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_rejoin_after_the_guest_server_left(
    sides: dict[str, Side], host: str, version: str
) -> None:
    """The guest server's only member leaves (then is kicked): the server is out of the room,
    misses what happens meanwhile, and a rejoin must bring it back in over federation."""
    h = sides[host]
    g = sides["accord" if host == "synapse" else "synapse"]
    h_feed, g_feed = await asyncio.gather(Feed(h.third).start(), Feed(g.third).start())
    room_id = await h.third.create_room(preset="public_chat", room_version=version)
    for departure in ("leave", "kick"):
        assert await g.third.join(room_id, via=[h.server_name]) == room_id
        await both_see_membership([h.third], room_id, g.third.user_id, "join", g.third.user_id)
        if departure == "leave":
            await g.third.leave(room_id)
            by = g.third.user_id
        else:
            await h.third.kick(room_id, g.third.user_id)
            by = h.third.user_id
        await both_see_membership([h.third], room_id, g.third.user_id, "leave", by)
        await g_feed.wait(lambda by=by: any(
            e["type"] == "m.room.member" and e.get("state_key") == g.third.user_id
            and e["sender"] == by and e["content"]["membership"] == "leave"
            for e in g_feed.left[room_id]
        ), f"the {departure} in rooms.leave")
        missed = f"sent while {g.label} was out after a {departure}"
        await h.third.send_text(room_id, missed)
        await h.third.send_state(room_id, "m.room.topic", {"topic": missed})

        assert await g.third.join(room_id, via=[h.server_name]) == room_id
        await both_see_membership([h.third, g.third], room_id, g.third.user_id, "join", g.third.user_id)
        await both_see_state([g.third], room_id, "m.room.topic", "", {"topic": missed}, h.third.user_id)
        back = f"{g.label} is back after a {departure}"
        await g.third.send_text(room_id, back)
        await h_feed.wait(lambda body=back: body in h_feed.bodies(room_id), repr(back))
        answer = f"welcome back after a {departure}"
        await h.third.send_text(room_id, answer)
        await g_feed.wait(lambda body=answer: body in g_feed.bodies(room_id), repr(answer))
        if departure == "leave":
            await g.third.leave(room_id)
            await both_see_membership([h.third], room_id, g.third.user_id, "leave", g.third.user_id)
