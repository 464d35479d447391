"""Interop test plumbing: the shared test CA and Synapse, and Synapse's log on failure.

``ca`` and ``synapse`` are module-scoped: starting Synapse costs seconds, so each test module gets
one and its tests only add users and rooms, never change its config. The same CA issues every
certificate, ours included, and Synapse trusts it alone for federation.

A failing interop test is usually explained by a warning Synapse logged (a rejected signature,
an unreachable destination), so the tail of every running Synapse's log is attached to the
failure report rather than left for someone to dig out of a temp directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
import pytest_asyncio

from tests.tls_ca import TestCA

from .synapse import SynapseServer, synapse_python


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def synapse(
    tmp_path_factory: pytest.TempPathFactory, ca: TestCA
) -> AsyncIterator[SynapseServer]:
    python = synapse_python()
    async with SynapseServer(tmp_path_factory.mktemp("synapse"), ca, python=python) as server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        for server in sorted(SynapseServer.running, key=lambda s: s.server_name):
            report.sections.append(
                (f"Synapse {server.server_name} log (in {server.directory})", server.log_tail())
            )
    return report
