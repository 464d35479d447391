"""Peers without an endpoint (404 M_UNRECOGNIZED, as from a server that lacks it): a
real server whose listener refuses that endpoint (a middleware in front of its routes,
not a change to the logic under test).

* No `/event_auth`: the auth events we lack are fetched one by one with `/event`, each
  through the PDU checks, and the event that needed them is accepted. B misses a power
  levels change of A's (A's sender is stopped and its queue for B dropped), then
  receives, through a real /send from A, an event whose auth events name that change
  while its prev events are all known to B: only the auth path can close it.
* No `/v2/invite`: an invite to a room of version 1 or 2 goes by `/v1/invite`; in a
  newer version it cannot be delivered (400 M_UNSUPPORTED_ROOM_VERSION)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from federation.client import RemoteError
from federation.events import build_event, get_room_version, pdu_json, select_auth_event_ids
from homeserver.federation.pdu_checks import PduError
from tests.homeserver.federation.servers import Pair, running_pair
from tests.homeserver.federation.test_inbound_send import _state_ids
from tests.tls_ca import TestCA

V1 = "/_matrix/federation/v1"


class Refusing:
    """The middleware: paths under the `refused` prefixes answered 404 M_UNRECOGNIZED;
    the event IDs asked of /event and the invite paths served are recorded."""

    def __init__(self, *refused: str) -> None:
        self.prefixes = refused
        self.refused = 0
        self.events_asked: list[str] = []
        self.invites: list[str] = []

    def middleware(self) -> Middleware:
        @web.middleware
        async def refuse(request: web.Request, handler: Handler) -> web.StreamResponse:
            if "/invite/" in request.path:
                self.invites.append(request.path)
            if request.path.startswith(self.prefixes):
                self.refused += 1
                return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status=404)
            if request.path.startswith(V1 + "/event/"):
                self.events_asked.append(request.match_info["event_id"])
            return await handler(request)

        return refuse


@pytest.fixture
async def refusing() -> Refusing:
    """What A refuses and was asked: /event_auth and /v2/invite."""
    return Refusing(V1 + "/event_auth/", "/_matrix/federation/v2/invite/")


@pytest.fixture
async def pair(tmp_path: Path, ca: TestCA, refusing: Refusing) -> AsyncIterator[Pair]:
    """A refuses what `refusing` names; B is a complete server."""
    async with running_pair(tmp_path, ca, a_config={"middlewares": [refusing.middleware()]}) as p:
        yield p


async def test_auth_events_fetched_one_by_one(pair: Pair, refusing: Refusing) -> None:
    p = pair
    a, b, a_spec, b_spec = p.a, p.b, p.a_spec, p.b_spec
    room_id = (await p.alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    await p.bob.call("POST", f"/join/{room_id}?server_name={a_spec.name}", {})
    await p.alice.call("PUT", f"/rooms/{room_id}/send/m.room.message/m1", {"msgtype": "m.text", "body": "first"})
    await p.bob.wait_for_message(room_id, "first")
    a_room, b_room = await a.room_store.get_room(room_id), await b.room_store.get_room(room_id)
    assert a_room is not None and b_room is not None
    common = (await b.event_store.get_events_by_nid((await b.room_service.head(b_room)).extremities)).values()

    # Two power level changes B never receives: the second's auth events name the first.
    await a.federation_sender.stop()
    levels = await p.alice.call("GET", f"/rooms/{room_id}/state/m.room.power_levels")
    first = (await p.alice.call("PUT", f"/rooms/{room_id}/state/m.room.power_levels",
                                {**levels, "events_default": 1}))["event_id"]
    second = (await p.alice.call("PUT", f"/rooms/{room_id}/state/m.room.power_levels",
                                 {**levels, "events_default": 2}))["event_id"]
    await a.federation_sender.store.remove_destination(b_spec.name)
    await a.federation_sender.start()
    assert not set(await b.event_store.get_events([first, second]))

    # A's event on B's side of the DAG (prev events B holds) citing A's newest power levels.
    state = await _state_ids(a, a_room)
    content: dict[str, Any] = {"msgtype": "m.text", "body": "authorised by the unseen levels"}
    partial = {"type": "m.room.message", "sender": p.alice_id, "content": content}
    event = build_event(
        a_room.room_version, room_id=room_id, sender=p.alice_id, event_type="m.room.message", content=content,
        prev_events=[e.event_id for e in common], auth_events=select_auth_event_ids(partial, state, a_room.room_version),
        depth=max(e.event["depth"] for e in common) + 1, origin_server_ts=a.clock.time_ms(),
        signing_key=a_spec.signing_key, server_name=a_spec.name,
    )
    assert second in event["auth_events"]
    answer = await a.federation_client.put_json(
        b_spec.name, f"{V1}/send/auth-fallback",
        {"origin": a_spec.name, "origin_server_ts": a.clock.time_ms(), "pdus": [pdu_json(event)], "edus": []},
    )
    assert answer == {"pdus": {event["event_id"]: {}}}
    assert refusing.refused >= 1
    # Exactly the missing auth events, each once: the second levels, then the first it cites.
    assert sorted(refusing.events_asked) == sorted([first, second])
    held = await b.event_store.get_events([first, second, event["event_id"]])
    assert held[first].outlier and held[second].outlier and held[first].rejected is None
    assert not held[event["event_id"]].outlier and held[event["event_id"]].rejected is None

    # An auth event the peer cannot supply fails that PDU, with one request.
    rv = get_room_version(b_room.room_version)
    asked = len(refusing.events_asked)
    with pytest.raises(PduError):
        await b.state_fetcher.fetch_auth_chain(a_spec.name, b_room, rv, {**event, "auth_events": ["$missing"]})
    assert len(refusing.events_asked) == asked + 1


async def test_invite_falls_back_to_v1(pair: Pair, refusing: Refusing) -> None:
    """B invites alice of A, whose server has no /v2/invite."""
    for version in ("1", "12"):
        room_id = await _bob_room(pair, version)
        b_room = await pair.b.room_store.get_room(room_id)
        assert b_room is not None
        path = f"/rooms/{room_id}/invite"
        if version == "1":
            await pair.bob.call("POST", path, {"user_id": pair.alice_id})
            assert [i.split("/")[3] for i in refusing.invites] == ["v2", "v1"]
            assert (await pair.b.room_store.membership_of(b_room.room_nid, pair.alice_id))[0] == "invite"
            invited = await pair.a.room_store.get_room(room_id)
            assert invited is not None
            assert (await pair.a.room_store.membership_of(invited.room_nid, pair.alice_id))[0] == "invite"
        else:
            refusing.invites.clear()
            answer = await pair.bob.call("POST", path, {"user_id": pair.alice_id}, expect=400)
            assert answer["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
            assert [i.split("/")[3] for i in refusing.invites] == ["v2"]  # no v1 for a v12 event
            assert await pair.b.room_store.membership_of(b_room.room_nid, pair.alice_id) is None


async def _bob_room(pair: Pair, version: str) -> str:
    answer = await pair.bob.call("POST", "/createRoom", {"preset": "private_chat", "room_version": version})
    return str(answer["room_id"])


@pytest.mark.parametrize(("status", "body", "unknown"), [
    (404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, True),
    (405, {"errcode": "M_UNRECOGNIZED"}, True),
    (404, None, True),  # a plain web server's 404 page
    (400, {"errcode": "M_UNRECOGNIZED"}, True),
    (404, {"errcode": "M_NOT_FOUND", "error": "Unknown room"}, False),  # the endpoint answered
    (400, {"errcode": "M_BAD_JSON"}, False),
    (403, {"errcode": "M_FORBIDDEN"}, False),
    (500, None, False),
])
def test_unknown_endpoint(status: int, body: Any, unknown: bool) -> None:
    errcode = body.get("errcode", "M_UNKNOWN") if isinstance(body, dict) else "M_UNKNOWN"
    assert RemoteError(status, errcode, "", body).unknown_endpoint is unknown
