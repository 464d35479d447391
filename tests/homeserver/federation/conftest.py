"""Fixtures of the federation tests: two real servers with a user each (the test CA,
`ca`, is the suite's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.homeserver.federation.servers import Pair, running_pair
from tests.tls_ca import TestCA


@pytest.fixture
async def pair(tmp_path: Path, ca: TestCA) -> AsyncIterator[Pair]:
    """A and B running, alice registered on A and bob on B (see `running_pair`)."""
    async with running_pair(tmp_path, ca) as p:
        yield p
