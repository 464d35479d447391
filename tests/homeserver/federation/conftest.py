"""Fixtures of the federation tests: two real servers with a user each, or servers a
test starts and stops itself (the test CA, `ca`, is the suite's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.homeserver.federation.servers import Pair, Servers, running_pair, servers_under
from tests.tls_ca import TestCA


@pytest.fixture
async def pair(tmp_path: Path, ca: TestCA) -> AsyncIterator[Pair]:
    """A and B running, alice registered on A and bob on B (see `running_pair`)."""
    async with running_pair(tmp_path, ca) as p:
        yield p


@pytest.fixture
async def servers(tmp_path: Path, ca: TestCA) -> AsyncIterator[Servers]:
    """Servers the test starts and stops itself (see `Servers`)."""
    async with servers_under(tmp_path, ca) as started:
        yield started
