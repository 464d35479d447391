"""Push rules: a user's own rules in priority order, and their changes to server defaults.

Server-default rule definitions are not stored (they live in code, see
homeserver/push/defaults.py); only what a user changed about them is.
"""

from __future__ import annotations

from typing import Any

import orjson

from homeserver.records.push_rules import DefaultRuleChange, UserRule
from homeserver.storage.database import Database, Txn


class AnchorNotFoundError(Exception):
    """`before`/`after` named a rule that is not one of the user's rules of that kind."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(rule_id)
        self.rule_id = rule_id


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class PushRuleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, user_id: str) -> tuple[list[UserRule], dict[str, DefaultRuleChange]]:
        """All of a user's rules (by kind, most important first) and default-rule changes,
        read in one snapshot so a ruleset is never assembled from two different moments."""
        return await self.db.read(lambda txn: self.load_in(txn, user_id))

    @staticmethod
    async def users_with_rules_in(txn: Txn) -> set[str]:
        """Every user with a rule of their own or a change to a server-default rule."""
        rows = await txn.fetchall(
            "SELECT user_id FROM push_rules UNION SELECT user_id FROM push_rule_defaults", ()
        )
        return {r[0] for r in rows}

    @staticmethod
    async def load_in(txn: Txn, user_id: str) -> tuple[list[UserRule], dict[str, DefaultRuleChange]]:
        """`load` inside a caller's transaction (the event writer's push actions)."""
        rows = await txn.fetchall(
            "SELECT kind, rule_id, conditions, pattern, actions, enabled FROM push_rules"
            " WHERE user_id = ? ORDER BY kind, position",
            (user_id,),
        )
        changes = await txn.fetchall(
            "SELECT rule_id, enabled, actions FROM push_rule_defaults WHERE user_id = ?",
            (user_id,),
        )
        rules = [
            UserRule(
                kind=r[0],
                rule_id=r[1],
                conditions=orjson.loads(r[2]) if r[2] is not None else None,
                pattern=r[3],
                actions=orjson.loads(r[4]),
                enabled=bool(r[5]),
            )
            for r in rows
        ]
        defaults = {
            c[0]: DefaultRuleChange(
                rule_id=c[0],
                enabled=bool(c[1]) if c[1] is not None else None,
                actions=orjson.loads(c[2]) if c[2] is not None else None,
            )
            for c in changes
        }
        return rules, defaults

    async def put_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        conditions: list[dict[str, Any]] | None,
        pattern: str | None,
        actions: list[Any],
        before: str | None = None,
        after: str | None = None,
    ) -> bool:
        """Create or replace a user rule; returns True if it was created.

        A new rule without before/after becomes the most important of its kind (the
        spec's rule); a replaced one keeps its place and its enabled state unless
        before/after moves it. `before` wins when both are given. Raises
        AnchorNotFoundError if the anchor is not one of the user's rules of this kind.
        """
        conditions_json = _dumps(conditions) if conditions is not None else None
        actions_json = _dumps(actions)

        async def fn(txn: Txn) -> bool:
            rows = await txn.fetchall(
                "SELECT rule_id FROM push_rules WHERE user_id = ? AND kind = ? ORDER BY position",
                (user_id, kind),
            )
            order = [r[0] for r in rows]
            exists = rule_id in order
            anchor = before if before is not None else after
            new_order = list(order)
            if anchor is not None:
                if anchor == rule_id or anchor not in order:
                    raise AnchorNotFoundError(anchor)
                if exists:
                    new_order.remove(rule_id)
                idx = new_order.index(anchor)
                new_order.insert(idx if before is not None else idx + 1, rule_id)
            elif not exists:
                new_order.insert(0, rule_id)
            if exists:
                await txn.execute(
                    "UPDATE push_rules SET conditions = ?, pattern = ?, actions = ?"
                    " WHERE user_id = ? AND kind = ? AND rule_id = ?",
                    (conditions_json, pattern, actions_json, user_id, kind, rule_id),
                )
            else:
                await txn.execute(
                    "INSERT INTO push_rules"
                    " (user_id, kind, rule_id, position, conditions, pattern, actions, enabled)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                    (user_id, kind, rule_id, 0, conditions_json, pattern, actions_json),
                )
            if new_order != order or not exists:
                await txn.executemany(
                    "UPDATE push_rules SET position = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                    [(i, user_id, kind, rid) for i, rid in enumerate(new_order)],
                )
            return not exists

        return await self.db.write(fn)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> bool:
        """Remove a user rule; False if there was none (positions of the rest keep their order)."""
        changed = await self.db.execute(
            "DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
            (user_id, kind, rule_id),
        )
        return changed > 0

    async def set_rule_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> bool:
        changed = await self.db.execute(
            "UPDATE push_rules SET enabled = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
            (int(enabled), user_id, kind, rule_id),
        )
        return changed > 0

    async def set_rule_actions(self, user_id: str, kind: str, rule_id: str, actions: list[Any]) -> bool:
        changed = await self.db.execute(
            "UPDATE push_rules SET actions = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
            (_dumps(actions), user_id, kind, rule_id),
        )
        return changed > 0

    async def set_default_enabled(self, user_id: str, rule_id: str, enabled: bool) -> None:
        await self.db.execute(
            "INSERT INTO push_rule_defaults (user_id, rule_id, enabled, actions) VALUES (?, ?, ?, NULL)"
            " ON CONFLICT (user_id, rule_id) DO UPDATE SET enabled = excluded.enabled",
            (user_id, rule_id, int(enabled)),
        )

    async def set_default_actions(self, user_id: str, rule_id: str, actions: list[Any]) -> None:
        await self.db.execute(
            "INSERT INTO push_rule_defaults (user_id, rule_id, enabled, actions) VALUES (?, ?, NULL, ?)"
            " ON CONFLICT (user_id, rule_id) DO UPDATE SET actions = excluded.actions",
            (user_id, rule_id, _dumps(actions)),
        )
