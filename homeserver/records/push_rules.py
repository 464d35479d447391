"""A user's own push rule, and a user's change to a server-default rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class UserRule:
    """A user-defined rule as stored; `conditions`/`pattern` are None where the kind has none."""

    kind: str
    rule_id: str
    conditions: list[dict[str, Any]] | None
    pattern: str | None
    actions: list[Any]
    enabled: bool


@dataclass(frozen=True)
class DefaultRuleChange:
    """A user's change to one server-default rule; None fields keep the server's value."""

    rule_id: str
    enabled: bool | None
    actions: list[Any] | None
