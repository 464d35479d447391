"""Interop test plumbing: show Synapse's log when a test against it fails.

A failing interop test is usually explained by a warning Synapse logged (a rejected signature,
an unreachable destination), so the tail of every running Synapse's log is attached to the
failure report rather than left for someone to dig out of a temp directory.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from .synapse import SynapseServer


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        for server in sorted(SynapseServer.running, key=lambda s: s.server_name):
            report.sections.append(
                (f"Synapse {server.server_name} log (in {server.directory})", server.log_tail())
            )
    return report
