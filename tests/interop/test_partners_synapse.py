"""Stock Synapse meets the ``partners`` federation policy.

Synapse is no partner of ours, so a server of ours under ``partners`` refuses
it in both directions: Synapse's users cannot join our rooms (our server
answers Synapse's signed requests 403 M_FORBIDDEN), and our users cannot join
Synapse's rooms (our server refuses before any request leaves). The same
Synapse federates normally with a server of ours under ``open``, or under
``partners`` with Synapse in ``allowed_servers``: it joins our room and a
message crosses each way.
"""

from __future__ import annotations

import ssl
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from yarl import URL

from federation.request_auth import sign_request
from homeserver.signing_key import load_signing_key
from tests.homeserver.federation.servers import ServerSpec, running_server
from tests.homeserver.partners.helpers import Client, Recorder
from tests.tls_ca import TestCA

from .synapse import MatrixError, SynapseClient, SynapseServer, timeline_events

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "interop partners password"


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sam(synapse: SynapseServer) -> SynapseClient:
    """A user of Synapse."""
    return synapse.client(await synapse.register_user("sam", PASSWORD))


async def synapse_signed(
    session: aiohttp.ClientSession, ctx: ssl.SSLContext, synapse: SynapseServer, destination: str,
    method: str, path: str, content: Any = None,
) -> tuple[int, Any]:
    """A federation request signed with Synapse's own key, as Synapse sends them."""
    key = load_signing_key(str(synapse.signing_key_path))
    auth = sign_request(method=method, uri=path, origin=synapse.server_name, destination=destination,
                        signing_key=key, content=content)
    body = orjson.dumps(content) if content is not None else None
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    async with session.request(
        method, URL(f"https://{destination}{path}", encoded=True), data=body, headers=headers, ssl=ctx
    ) as r:
        return r.status, await r.json(content_type=None)


async def test_partners_policy_refuses_synapse(
    tmp_path: Path, ca: TestCA, synapse: SynapseServer, sam: SynapseClient
) -> None:
    spec = ServerSpec(tmp_path, "127.0.0.2")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with running_server(spec, ca, policy="partners") as hs, aiohttp.ClientSession() as s:
        sent = Recorder(hs)
        alice = Client(s, spec, ctx)
        await alice.register("alice")
        ours = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Ours"}))["room_id"]
        theirs = await sam.create_room(preset="public_chat", name="Theirs")

        # Our user cannot join Synapse's room: refused before any request leaves.
        status, err = await alice.raw("POST", f"/join/{q(theirs)}?server_name={synapse.server_name}", {})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err
        assert "policy" in err["error"]
        assert sent.sent == []

        # Synapse's user cannot join ours: Synapse's make_join gets 403 from us.
        with pytest.raises(MatrixError) as refused:
            await sam.join(ours, via=[spec.name])
        # Synapse passes our answer on to its user.
        assert refused.value.status == 403 and refused.value.body["errcode"] == "M_FORBIDDEN", refused.value.body
        assert "only federates with its partners" in refused.value.body["error"]
        room = await hs.room_store.get_room(ours)
        assert room is not None
        assert await hs.room_store.membership_of(room.room_nid, sam.user_id) is None
        # We fetched Synapse's key (to check its signature before refusing) and nothing else.
        assert {(x.destination, x.path) for x in sent.sent} <= {(synapse.server_name, "/_matrix/key/v2/server")}

        # Synapse's signed requests to us: 403 M_FORBIDDEN, whatever they ask.
        for method, path, content in (
            ("GET", f"/_matrix/federation/v1/make_join/{q(ours)}/{q(sam.user_id)}?ver=10&ver=11", None),
            ("PUT", "/_matrix/federation/v1/send/s1",
             {"origin": synapse.server_name, "origin_server_ts": 1, "pdus": []}),
            ("GET", f"/_matrix/federation/v1/query/profile?user_id={q(alice.user_id)}", None),
        ):
            status, err = await synapse_signed(s, ctx, synapse, spec.name, method, path, content)
            assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), (path, err)
        # The key API and /version stay open (that is how a partnership could start).
        status, _ = await synapse_signed(s, ctx, synapse, spec.name, "GET", "/_matrix/federation/v1/version")
        assert status == 200

        await hs.federation_policy.flush()
        refusals = {
            (e.target, e.details["direction"], e.details["path"].split("/")[4])
            for e in await hs.audit.query(action="federation.refused")
        }
        # One record per direction (a minute's refusals share one): the first inbound one
        # was Synapse's own make_join.
        assert refusals == {
            (synapse.server_name, "inbound", "make_join"), (synapse.server_name, "outbound", "make_join")
        }


@pytest.mark.parametrize(
    ("ip", "policy"), [("127.0.0.6", "open"), ("127.0.0.7", "partners+allowed")], ids=["open", "allowed"]
)
async def test_open_or_allowed_federates_with_synapse(
    tmp_path: Path, ca: TestCA, synapse: SynapseServer, sam: SynapseClient, ip: str, policy: str
) -> None:
    spec = ServerSpec(tmp_path, ip)
    fed: dict[str, Any] = (
        {"policy": "open"} if policy == "open"
        else {"policy": "partners", "allowed_servers": [synapse.server_name]}
    )
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with running_server(spec, ca, **fed) as hs, aiohttp.ClientSession() as s:
        alice = Client(s, spec, ctx)
        await alice.register("alice")
        # Synapse's user joins our room; a message each way.
        ours = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Ours"}))["room_id"]
        assert await sam.join(ours, via=[spec.name]) == ours
        await sam.send_text(ours, f"hello from synapse ({policy})")
        await alice.wait_for_message(ours, f"hello from synapse ({policy})", within=20)
        await alice.say(ours, f"hello from accord ({policy})")
        await sam.sync_until(lambda r: any(
            e.get("content", {}).get("body") == f"hello from accord ({policy})" for e in timeline_events(r, ours)))
        # Our user joins Synapse's room; a message each way.
        theirs = await sam.create_room(preset="public_chat", name=f"Theirs ({policy})")
        assert await alice.call("POST", f"/join/{q(theirs)}?server_name={synapse.server_name}", {}) == {
            "room_id": theirs}
        await alice.say(theirs, "hi synapse room")
        await sam.sync_until(lambda r: any(
            e.get("content", {}).get("body") == "hi synapse room" for e in timeline_events(r, theirs)))
        await sam.send_text(theirs, "hi accord user")
        await alice.wait_for_message(theirs, "hi accord user", within=20)
        await hs.federation_policy.flush()
        assert await hs.audit.query(action="federation.refused") == []
