"""Our answers and revokes reach a partner that was down, even when this server
restarts before the partner is back: they are queued in the database with the
change they announce, not retried in memory only."""

from __future__ import annotations

from pathlib import Path

from homeserver.records.partnerships import ACTIVE, PENDING, REVOKED
from homeserver.server import HomeServer
from tests.homeserver.federation.servers import ServerSpec
from tests.homeserver.partners.helpers import partner_server, until
from tests.tls_ca import TestCA

CONFIG = {"federation": {"policy": "partners", "retry_base_s": 0.1, "retry_cap_s": 0.5}}


async def state_of(hs: HomeServer, peer: str) -> str | None:
    p = await hs.partners.get(peer)
    return p.state if p else None


async def test_accept_and_revoke_reach_the_peer_across_our_restart(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    admin = f"@admin:{a_spec.name}"
    async with partner_server(a_spec, ca, **CONFIG) as a:
        async with partner_server(b_spec, ca, **CONFIG) as b:
            await b.partners.request(a_spec.name, by=f"@admin:{b_spec.name}")
            assert await state_of(a, b_spec.name) == PENDING
            # B knows A's key from this contact (a peer meeting us for the first time
            # while our key server is not yet listening is the keyring's matter).
            assert await b.keyring.get_verify_keys(a_spec.name, [a_spec.key_id])
        # B is down when A accepts, and A stops before B is back.
        await a.partners.accept(b_spec.name, by=admin)
    async with partner_server(b_spec, ca, **CONFIG) as b:
        assert await state_of(b, a_spec.name) == PENDING
        async with partner_server(a_spec, ca, **CONFIG) as a:
            await until(lambda: _is(b, a_spec.name, ACTIVE))
            await a.partners.wait_for_deliveries()
            assert await a.partners.store.next_delivery(b_spec.name) is None

    # The same for a revoke.
    async with partner_server(a_spec, ca, **CONFIG) as a:
        await a.partners.revoke(b_spec.name, by=admin, reason="the contract ended")
    async with partner_server(b_spec, ca, **CONFIG) as b:
        assert await state_of(b, a_spec.name) == ACTIVE
        async with partner_server(a_spec, ca, **CONFIG) as a:
            await until(lambda: _is(b, a_spec.name, REVOKED))
            await a.partners.wait_for_deliveries()
            assert await a.partners.store.next_delivery(b_spec.name) is None


async def _is(hs: HomeServer, peer: str, state: str) -> bool:
    return await state_of(hs, peer) == state
