"""The key store's SQL on both database engines: the key and cross-signing API
tests, run again on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import Api
from tests.homeserver.e2ee import test_cross_signing, test_keys

CASES: list[Callable[[Api], Awaitable[None]]] = [
    test_keys.test_upload_query_and_counts,
    test_keys.test_one_time_keys_dedup_and_conflict,
    test_keys.test_claim_otk_then_fallback,
    test_keys.test_concurrent_claims_never_share_a_key,
    test_keys.test_sync_carries_key_counts_in_every_response,
    test_keys.test_deleting_a_device_removes_its_keys,
    test_keys.test_deactivation_removes_keys,
    test_keys.test_hostile_ids_in_upload_query_and_claim,
    test_cross_signing.test_first_upload_without_auth_then_auth_to_replace,
    test_cross_signing.test_signatures_upload,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
async def test_on_both_engines(db_overrides: dict[str, Any], case: Callable[[Api], Awaitable[None]], make_api: Any) -> None:
    await case(await make_api(**db_overrides))
