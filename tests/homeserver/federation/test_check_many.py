"""`PduChecks.check_many`, which verifies a send_join answer's events in worker
threads: the same answers as `check`, one per PDU in order, a repeat verified once,
and any bad event refusing the batch. Events signed with the server's own key, so the
key ring answers without the network."""

from __future__ import annotations

from typing import Any

import pytest

from federation.events import add_hashes_and_signature, get_room_version
from homeserver.federation.pdu_checks import PduError
from tests.conftest import ClientFactory

RV = get_room_version("10")


async def test_check_many_agrees_with_check(make_api: ClientFactory) -> None:
    hs = (await make_api()).hs
    me = hs.config.server_name

    def event(n: int, **fields: Any) -> dict[str, Any]:
        base = {"type": "m.room.member", "room_id": f"!r:{me}", "sender": f"@u{n}:{me}", "state_key": f"@u{n}:{me}",
                "content": {"membership": "join"}, "depth": n, "origin_server_ts": 1_700_000_000_000 + n,
                "prev_events": [], "auth_events": [], **fields}
        return add_hashes_and_signature(base, RV, me, hs.signing_key)

    pdus = [event(n) for n in range(600)]  # several chunks
    altered = dict(pdus[7], content={"membership": "join", "displayname": "not what was hashed"})
    batch = [*pdus[:7], altered, *pdus[8:], pdus[3]]
    checked = await hs.pdu_checks.check_many(batch, RV)
    assert len(checked) == len(batch)
    for pdu, got in zip(batch, checked, strict=True):
        assert got == await hs.pdu_checks.check(pdu, RV)
    assert checked[600] is checked[3]  # a repeat is the first copy's answer
    # A content hash mismatch keeps the event, redacted (the signature covers only that).
    assert checked[7]["content"] == {"membership": "join"} and "hashes" in checked[7]

    forged = dict(pdus[5], origin_server_ts=1)  # signed fields changed: the signature fails
    with pytest.raises(PduError, match="Bad signature"):
        await hs.pdu_checks.check_many([*pdus[:300], forged], RV)
    with pytest.raises(PduError, match="Invalid PDU"):
        await hs.pdu_checks.check_many([pdus[0], {"type": "m.room.member"}], RV)
