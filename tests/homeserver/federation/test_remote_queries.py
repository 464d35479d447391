"""Profiles and room directories of other servers, asked for by our clients: real
servers over TLS, and a real (misbehaving) HTTPS peer for the answers no honest
server gives."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from homeserver.federation import queries
from homeserver.rooms import public_rooms
from tests.homeserver.federation.servers import (
    Client,
    ServerSpec,
    free_port,
    running_server,
    start_tls_app,
)
from tests.tls_ca import TestCA


async def test_profiles_and_directory_of_another_server(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with running_server(a_spec, ca) as a, running_server(b_spec, ca), aiohttp.ClientSession() as s:
        alice, bob = Client(s, a_spec, ctx), Client(s, b_spec, ctx)
        await alice.register("alice")
        bob_id = await bob.register("bob")
        await bob.call("PUT", f"/profile/{bob_id}/displayname", {"displayname": "Bob on B"})
        await bob.call("PUT", f"/profile/{bob_id}/m.tz", {"m.tz": "Europe/Paris"})

        assert await alice.call("GET", f"/profile/{bob_id}") == {"displayname": "Bob on B", "m.tz": "Europe/Paris"}
        assert await alice.call("GET", f"/profile/{bob_id}/m.tz") == {"m.tz": "Europe/Paris"}
        # Fields B does not have, users B does not have: B's 404 is ours.
        err = await alice.call("GET", f"/profile/{bob_id}/avatar_url", expect=404)
        assert err["errcode"] == "M_NOT_FOUND"
        err = await alice.call("GET", f"/profile/@nobody:{b_spec.name}", expect=404)
        assert err["errcode"] == "M_NOT_FOUND"
        # A key no profile can hold is not even asked about.
        assert (await alice.call("GET", f"/profile/{bob_id}/Not%20A%20Key", expect=404))["errcode"] == "M_NOT_FOUND"
        assert (await alice.call("GET", "/profile/not-a-user-id", expect=400))["errcode"] == "M_INVALID_PARAM"
        # Nobody may change a remote user's profile through us.
        err = await alice.call("PUT", f"/profile/{bob_id}/displayname", {"displayname": "x"}, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"

        # Answers are reused for a while: B's change shows once the entry expires.
        await bob.call("PUT", f"/profile/{bob_id}/displayname", {"displayname": "Bob renamed"})
        assert (await alice.call("GET", f"/profile/{bob_id}/displayname")) == {"displayname": "Bob on B"}
        a.remote_profiles._cache._entries.clear()
        assert (await alice.call("GET", f"/profile/{bob_id}/displayname")) == {"displayname": "Bob renamed"}

        # B's published directory, through A.
        rooms = {}
        for name, topic in [("Gardening", "roses"), ("Chess", "openings"), ("Cooking", "bread")]:
            created = await bob.call("POST", "/createRoom", {
                "preset": "public_chat", "visibility": "public", "name": name, "topic": topic})
            rooms[name] = created["room_id"]
        await bob.call("POST", "/createRoom", {"preset": "private_chat", "name": "Secret"})
        page = await alice.call("GET", f"/publicRooms?server={b_spec.name}")
        assert {r["name"] for r in page["chunk"]} == {"Gardening", "Chess", "Cooking"}
        assert page["total_room_count_estimate"] == 3
        assert all(r["num_joined_members"] == 1 and r["world_readable"] is False for r in page["chunk"])

        first = await alice.call("GET", f"/publicRooms?server={b_spec.name}&limit=2")
        assert len(first["chunk"]) == 2 and "next_batch" in first
        rest = await alice.call("POST", f"/publicRooms?server={b_spec.name}",
                                {"limit": 2, "since": first["next_batch"]})
        seen = [r["room_id"] for r in first["chunk"] + rest["chunk"]]
        assert sorted(seen) == sorted(rooms.values())

        found = await alice.call("POST", f"/publicRooms?server={b_spec.name}",
                                 {"filter": {"generic_search_term": "BREAD"}})
        assert [r["room_id"] for r in found["chunk"]] == [rooms["Cooking"]]
        none = await alice.call("POST", f"/publicRooms?server={b_spec.name}",
                                {"third_party_instance_id": "irc"})
        assert none["chunk"] == []
        # Our own name is our own directory; a bad name is refused before anything goes out.
        assert (await alice.call("GET", f"/publicRooms?server={a_spec.name}"))["chunk"] == []
        err = await alice.call("GET", "/publicRooms?server=bad%20name", expect=400)
        assert err["errcode"] == "M_INVALID_PARAM"
        err = await alice.call("POST", f"/publicRooms?server={b_spec.name}",
                               {"include_all_networks": True, "third_party_instance_id": "irc"}, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM"


class HostilePeer:
    """A TLS server that speaks just enough federation to answer wrongly: each
    path answers with whatever the test put in `answers` (a web.Response or an
    awaitable that never ends)."""

    def __init__(self, ca: TestCA, ip: str) -> None:
        self.ca, self.ip = ca, ip
        self.port = free_port(ip)
        self.name = f"{ip}:{self.port}"
        self.answers: dict[str, Any] = {}
        self.requests: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        answer = self.answers.get(f"{request.method} {request.path}")
        if answer is None:
            return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "?"}, status=404)
        if callable(answer):
            return await answer()
        return web.Response(body=answer[1], status=answer[0], content_type="application/json")

    async def __aenter__(self) -> HostilePeer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = await start_tls_app(app, self.ca, self.ip, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


PROFILE = "GET /_matrix/federation/v1/query/profile"
ROOMS_GET = "GET /_matrix/federation/v1/publicRooms"
ROOMS_POST = "POST /_matrix/federation/v1/publicRooms"


def _room(room_id: str, **extra: Any) -> dict[str, Any]:
    return {"room_id": room_id, "num_joined_members": 3, "world_readable": True, "guest_can_join": False, **extra}


async def test_bad_remote_answers_become_spec_errors(
    tmp_path: Path, ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "QUERY_TIMEOUT_S", 1.0)
    monkeypatch.setattr(public_rooms, "REMOTE_QUERY_TIMEOUT_S", 1.0)
    a_spec = ServerSpec(tmp_path, "127.0.0.2")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with (
        running_server(a_spec, ca) as a,
        HostilePeer(ca, "127.0.0.4") as peer,
        aiohttp.ClientSession() as s,
    ):
        alice = Client(s, a_spec, ctx)
        await alice.register("alice")
        user = f"@eve:{peer.name}"

        async def profile(expect: int, field: str = "") -> dict[str, Any]:
            a.remote_profiles._cache._entries.clear()
            got: dict[str, Any] = await alice.call("GET", f"/profile/{user}{field}", expect=expect)
            return got

        def answer(status: int, body: bytes) -> None:
            peer.answers[PROFILE] = (status, body)

        answer(200, b"<html>not json</html>")
        assert (await profile(502))["errcode"] == "M_UNKNOWN"
        answer(200, b'["a", "list"]')
        assert (await profile(502))["errcode"] == "M_UNKNOWN"
        answer(200, b'{"displayname": "' + b"x" * 70_000 + b'"}')
        assert (await profile(502))["errcode"] == "M_UNKNOWN"
        # Wrong types of the fields the spec defines are dropped, null means unset.
        answer(200, b'{"displayname": 5, "avatar_url": "https://evil", "m.tz": null, "org.x.y": [1]}')
        assert await profile(200) == {"org.x.y": [1]}
        assert (await profile(404, "/displayname"))["errcode"] == "M_NOT_FOUND"
        # A field query answered with more than the field: only the field is passed on.
        answer(200, b'{"displayname": "Eve", "avatar_url": "mxc://x/y"}')
        assert await profile(200, "/displayname") == {"displayname": "Eve"}
        # The peer's own errors: 404 and 403 keep their meaning; a 401 must not reach
        # our client (it would log it out) and a 500 is the peer's failure: 502.
        answer(404, b'{"errcode": "M_NOT_FOUND", "error": "no"}')
        assert (await profile(404))["errcode"] == "M_NOT_FOUND"
        answer(403, b'{"errcode": "M_FORBIDDEN", "error": "no"}')
        assert (await profile(403))["errcode"] == "M_FORBIDDEN"
        answer(401, b'{"errcode": "M_UNKNOWN_TOKEN", "error": "no"}')
        assert (await profile(502))["errcode"] == "M_UNKNOWN"
        answer(500, b"oops")
        assert (await profile(502))["errcode"] == "M_UNKNOWN"

        released = asyncio.Event()

        async def hang() -> web.Response:
            await released.wait()  # until A has given up on it
            return web.json_response({"displayname": "too late"})

        peer.answers[PROFILE] = hang
        assert (await profile(504))["errcode"] == "M_UNKNOWN"
        released.set()

        # Concurrent clients asking the same profile cost the peer one request.
        answer(200, b'{"displayname": "Eve"}')
        a.remote_profiles._cache._entries.clear()
        before = len(peer.requests)
        results = await asyncio.gather(*(alice.call("GET", f"/profile/{user}") for _ in range(5)))
        assert all(r == {"displayname": "Eve"} for r in results)
        assert len(peer.requests) - before == 1

        # Directories: malformed entries are dropped, the rest passed on with only valid fields.
        good = _room("!good:x", name="Good", avatar_url="ftp://no", canonical_alias="#ok:x", extra="dropped")
        body = {
            "chunk": [good, _room("!b:x", num_joined_members="3"), _room("no-bang"), "junk", _room("!c:x", world_readable=1)],
            "next_batch": "n" * 5000, "prev_batch": "p1", "total_room_count_estimate": -1,
        }
        peer.answers[ROOMS_GET] = (200, orjson.dumps(body))
        page = await alice.call("GET", f"/publicRooms?server={peer.name}")
        assert page == {"chunk": [_room("!good:x", name="Good", canonical_alias="#ok:x")], "prev_batch": "p1"}
        # A huge page is cut to the limit asked for (the peer was asked for no more).
        many = {"chunk": [_room(f"!r{i}:x") for i in range(5000)]}
        peer.answers[ROOMS_GET] = (200, orjson.dumps(many))
        page = await alice.call("GET", f"/publicRooms?server={peer.name}&limit=7")
        assert len(page["chunk"]) == 7
        assert peer.requests[-1][1].endswith("limit=7")
        directory_cache_clear(a)  # the first page above, without a limit, is still reused
        page = await alice.call("GET", f"/publicRooms?server={peer.name}")
        assert len(page["chunk"]) == public_rooms.MAX_REMOTE_ROOMS

        # A peer without the POST form: the GET page, filtered here.
        peer.answers[ROOMS_GET] = (200, orjson.dumps({"chunk": [_room("!a:x", name="Alpha"), _room("!b:x", topic="beta")]}))
        page = await alice.call("POST", f"/publicRooms?server={peer.name}", {"filter": {"generic_search_term": "BET"}})
        assert [r["room_id"] for r in page["chunk"]] == ["!b:x"]
        assert [m for m, _ in peer.requests[-2:]] == ["POST", "GET"]

        for bad in (b"nope", b'{"chunk": {}}', b"[]"):
            peer.answers[ROOMS_GET] = (200, bad)
            directory_cache_clear(a)
            err = await alice.call("GET", f"/publicRooms?server={peer.name}", expect=502)
            assert err["errcode"] == "M_UNKNOWN"

        # Nobody at all at that address.
        gone = f"127.0.0.4:{free_port('127.0.0.4')}"
        err = await alice.call("GET", f"/publicRooms?server={gone}", expect=502)
        assert err["errcode"] == "M_UNKNOWN"
        err = await alice.call("GET", f"/profile/@x:{gone}", expect=502)
        assert err["errcode"] == "M_UNKNOWN"


def directory_cache_clear(hs: Any) -> None:
    hs.public_rooms._remote_rooms._entries.clear()


@contextlib.asynccontextmanager
async def tcp_listener(ip: str) -> AsyncIterator[tuple[str, list[int]]]:
    """A plain TCP port that counts connections: proof that nothing was sent."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    port = free_port(ip)
    server = await asyncio.start_server(on_connect, ip, port)
    try:
        yield f"{ip}:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


async def test_nothing_leaves_a_server_that_does_not_federate(tmp_path: Path) -> None:
    spec = ServerSpec(tmp_path, "127.0.0.2")
    async with (
        tcp_listener("127.0.0.5") as (remote, connections),
        running_server(spec, None, enabled=False),
        aiohttp.ClientSession() as s,
    ):
        alice = Client(s, spec, ssl.create_default_context())
        alice.base = f"http://{spec.name}/_matrix/client/v3"
        await alice.register("alice")
        for path in (f"/profile/@bob:{remote}", f"/profile/@bob:{remote}/displayname",
                     f"/publicRooms?server={remote}"):
            assert (await alice.call("GET", path, expect=404))["errcode"] == "M_NOT_FOUND"
        err = await alice.call("POST", f"/publicRooms?server={remote}", {"filter": {"generic_search_term": "x"}},
                               expect=404)
        assert err["errcode"] == "M_NOT_FOUND"
        assert connections == []
