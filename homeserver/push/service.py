"""PushRulesService: stores each user's push rules and serves merged rulesets
(the spec's /pushrules API and m.push_rules account data), checking what clients send."""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.push.defaults import DEFAULT_RULE_KINDS, KINDS, Action, Rule, Ruleset, build_ruleset
from homeserver.push.evaluator import HISTORICAL_ACTIONS, MEMBER_COUNT, CompiledRuleset, is_scalar
from homeserver.records.push_rules import DefaultRuleChange, UserRule
from homeserver.storage.database import Txn
from homeserver.storage.push_rules import AnchorNotFoundError, PushRuleStore

PUSH_RULES_TYPE = "m.push_rules"  # the global account data event that carries the ruleset


# --- validation of client input ---------------------------------------------------


def validate_actions(actions: Any) -> list[Action]:
    """A client's actions array, checked and kept exactly as given; M_BAD_JSON otherwise.

    The historical actions (dont_notify, coalesce) are accepted and stored: the spec
    says to ignore them, not reject them, and clients read their rules back expecting
    what they wrote (as Synapse returns them). Evaluation strips them
    (homeserver/push/evaluator.py), so they never change what notifies.
    """
    if not isinstance(actions, list):
        raise bad_json("'actions' must be an array")
    for a in actions:
        if isinstance(a, str):
            if a != "notify" and a not in HISTORICAL_ACTIONS:
                raise bad_json(f"Unrecognised action {a!r}")
        elif isinstance(a, dict):
            if not isinstance(a.get("set_tweak"), str):
                raise bad_json("An object action must have a string 'set_tweak'")
        else:
            raise bad_json("Each action must be a string or an object")
    return actions


def validate_conditions(conditions: Any) -> list[dict[str, Any]]:
    """A client's conditions array. Known kinds must carry their parameters; unknown
    kinds are kept (the spec makes them never match, so they cannot be rejected as errors
    without breaking clients that know newer kinds)."""
    if not isinstance(conditions, list):
        raise bad_json("'conditions' must be an array")
    for c in conditions:
        if not isinstance(c, dict) or not isinstance(c.get("kind"), str):
            raise bad_json("Each condition must be an object with a string 'kind'")
        kind = c["kind"]
        if kind in ("event_match", "event_property_is", "event_property_contains", "sender_notification_permission"):
            if not isinstance(c.get("key"), str):
                raise bad_json(f"A {kind} condition needs a string 'key'")
        if kind == "event_match" and not isinstance(c.get("pattern"), str):
            raise bad_json("An event_match condition needs a string 'pattern'")
        if kind in ("event_property_is", "event_property_contains"):
            if "value" not in c or not is_scalar(c["value"]):
                raise bad_json(f"A {kind} condition needs a 'value' that is a string, integer, boolean or null")
        if kind == "room_member_count":
            spec = c.get("is")
            if not isinstance(spec, str) or MEMBER_COUNT.fullmatch(spec) is None:
                raise bad_json("A room_member_count condition needs 'is': an integer, optionally prefixed by ==, <, >, <= or >=")
    return conditions


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind {kind!r}; expected one of {', '.join(KINDS)}")


_CACHE_SIZE = 10_000  # users whose ruleset (and its compiled form, once asked for) is kept


class _Cached:
    """A user's ruleset and, once evaluated, its compiled form (most of whose rules
    are matchers shared with every other user's, homeserver/push/evaluator.py)."""

    __slots__ = ("ruleset", "compiled")

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.compiled: CompiledRuleset | None = None


class GlobalAccountData(Protocol):
    """Where m.push_rules is published (AccountDataService)."""

    async def set_global(self, user_id: str, data_type: str, content: dict[str, Any]) -> Any: ...


class UserWaker(Protocol):
    """Wakes the user's waiting /sync requests (the Notifier)."""

    def notify_users(self, user_ids: Iterable[str]) -> None: ...


class PushRulesService:
    """Stores each user's rules and serves merged rulesets.

    Rulesets are cached per user, with their compiled form for the event writer
    (this process is the only writer, so dropping a user's entry on any change of
    their rules keeps the cache exact: the next event is evaluated against the
    change); at most `_CACHE_SIZE` users, least recently used dropped first.
    Each user's changes are serialised so the m.push_rules account data written
    after a change is never overtaken by the one written after an earlier change.
    """

    def __init__(self, store: PushRuleStore, account_data: GlobalAccountData, waker: UserWaker) -> None:
        self.store = store
        self._account_data = account_data
        self._waker = waker
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._writes = 0  # bumped around every write: a load that raced one is not cached
        self._user_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Users whose ruleset may differ from the server's defaults: loaded once, plus
        # every user who started a change since (added before it is written, never
        # removed: a user wrongly here only costs an evaluation of their own ruleset).
        self._customised: set[str] | None = None
        self._touched: set[str] = set()

    def _user_lock(self, user_id: str) -> asyncio.Lock:
        lock = self._user_locks.get(user_id)
        if lock is None:
            lock = asyncio.Lock()
            self._user_locks[user_id] = lock
        return lock

    async def ruleset(self, user_id: str) -> Ruleset:
        """The user's ruleset in evaluation order. Shared with the cache: do not mutate."""
        return (await self._cached(user_id, lambda: self.store.load(user_id))).ruleset

    async def compiled_in(self, txn: Txn, user_id: str) -> CompiledRuleset:
        """The user's ruleset compiled for `evaluate`, for code inside a write
        transaction, which may only read through its own `txn` (the event writer's
        push actions); compiled on first need and kept with the cached ruleset."""
        cached = await self._cached(user_id, lambda: PushRuleStore.load_in(txn, user_id))
        if cached.compiled is None:
            cached.compiled = CompiledRuleset(cached.ruleset)
        return cached.compiled

    async def customised_in(self, txn: Txn) -> tuple[AbstractSet[str], ...]:
        """The users whose ruleset may be other than the server's defaults for them
        (`server_default_rules`), as sets to intersect with a room's members: for the
        event writer's push actions, which evaluate the defaults once for every other
        member of a room. Live views: a later change of rules is in them too."""
        if self._customised is None:
            self._customised = await PushRuleStore.users_with_rules_in(txn)
        return self._customised, self._touched

    async def _cached(
        self, user_id: str, load: Callable[[], Awaitable[tuple[list[UserRule], dict[str, DefaultRuleChange]]]]
    ) -> _Cached:
        cached = self._cache.get(user_id)
        if cached is not None:
            self._cache.move_to_end(user_id)
            return cached
        writes = self._writes
        rules, changes = await load()
        cached = _Cached(build_ruleset(user_id, rules, changes))
        if writes == self._writes:
            self._cache[user_id] = cached
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return cached

    async def account_data_content(self, user_id: str) -> dict[str, Any]:
        """The content of the user's m.push_rules account data event."""
        return {"global": await self.ruleset(user_id)}

    async def sync_account_data(self, user_id: str, since: int, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """/sync's global account data events (changed after stream position `since`)
        with m.push_rules made right.

        Each change is written to the account data stream (see `_publish`), which is
        how incremental syncs learn of it. A user who never changed a rule has no
        stored copy, yet clients expect the ruleset in every initial sync (`since`
        0; the account data stream never hands out 0 as a position, so an incremental
        sync never asks for it). Whatever is sent carries the live ruleset, so a
        server upgrade that changes the default rules is not hidden behind a stored copy.
        """
        out = [e for e in events if e.get("type") != PUSH_RULES_TYPE]
        if since == 0 or len(out) != len(events):
            out.append({"type": PUSH_RULES_TYPE, "content": await self.account_data_content(user_id)})
        return out

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> Rule:
        check_kind(kind)
        for rule in (await self.ruleset(user_id))[kind]:
            if rule["rule_id"] == rule_id:
                return rule
        raise not_found("The push rule was not found")

    async def _change(self, user_id: str, op: Callable[[], Awaitable[bool | None]]) -> bool:
        """Run one change under the user's lock; unless `op` reports that nothing
        changed (False), tell the user's clients. Returns whether it changed anything."""
        self._touched.add(user_id)
        async with self._user_lock(user_id):
            self._writes += 1
            try:
                changed = await op() is not False
            finally:
                self._writes += 1
                self._cache.pop(user_id, None)
            if changed:
                await self._publish(user_id)
        return changed

    async def _publish(self, user_id: str) -> None:
        # Clients learn of changes through m.push_rules in /sync's global account data.
        await self._account_data.set_global(user_id, PUSH_RULES_TYPE, await self.account_data_content(user_id))
        self._waker.notify_users([user_id])

    async def put_rule(self, user_id: str, kind: str, rule_id: str, body: Mapping[str, Any],
                       before: str | None = None, after: str | None = None) -> None:
        """Create or replace a user-defined rule (PUT /pushrules/global/{kind}/{ruleId})."""
        check_kind(kind)
        if rule_id.startswith("."):
            raise invalid_param("Rule IDs starting with '.' are reserved for server-default rules")
        if not rule_id or "/" in rule_id or "\\" in rule_id:
            raise invalid_param("Rule IDs may not be empty or contain '/' or '\\'")
        if kind == "room" and not rule_id.startswith("!"):
            raise invalid_param("The rule ID of a room rule must be the room's ID")
        if kind == "sender" and not rule_id.startswith("@"):
            raise invalid_param("The rule ID of a sender rule must be the sender's user ID")
        for name, anchor in (("before", before), ("after", after)):
            if anchor is not None and anchor.startswith("."):
                raise MatrixError(400, "M_UNKNOWN", f"Cannot place a rule relative to the server-default rule {anchor!r} ({name})")
        if "actions" not in body:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing required field 'actions'")
        actions = validate_actions(body["actions"])
        conditions: list[dict[str, Any]] | None = None
        pattern: str | None = None
        if kind in ("override", "underride"):
            raw = body.get("conditions")
            conditions = validate_conditions(raw) if raw is not None else []
        elif kind == "content":
            pattern = body.get("pattern")
            if pattern is None:
                raise MatrixError(400, "M_MISSING_PARAM", "Content rules need a 'pattern'")
            if not isinstance(pattern, str):
                raise bad_json("'pattern' must be a string")

        async def op() -> None:  # always a change: even an identical PUT is published
            try:
                await self.store.put_rule(user_id, kind, rule_id, conditions=conditions, pattern=pattern,
                                          actions=actions, before=before, after=after)
            except AnchorNotFoundError as e:
                raise MatrixError(400, "M_UNKNOWN", f"before/after rule not found: {e.rule_id}") from None

        await self._change(user_id, op)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        check_kind(kind)
        if DEFAULT_RULE_KINDS.get(rule_id) == kind:
            raise forbidden("Server-default push rules cannot be deleted; disable them instead")
        if not await self._change(user_id, lambda: self.store.delete_rule(user_id, kind, rule_id)):
            raise not_found("The push rule was not found")

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
        check_kind(kind)
        if DEFAULT_RULE_KINDS.get(rule_id) == kind:
            await self._change(user_id, lambda: self.store.set_default_enabled(user_id, rule_id, enabled))
            return
        if not await self._change(user_id, lambda: self.store.set_rule_enabled(user_id, kind, rule_id, enabled)):
            raise not_found("The push rule was not found")

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: Any) -> None:
        check_kind(kind)
        checked = validate_actions(actions)
        if DEFAULT_RULE_KINDS.get(rule_id) == kind:
            await self._change(user_id, lambda: self.store.set_default_actions(user_id, rule_id, checked))
            return
        if not await self._change(user_id, lambda: self.store.set_rule_actions(user_id, kind, rule_id, checked)):
            raise not_found("The push rule was not found")
