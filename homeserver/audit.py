"""The audit log: who did what security-relevant thing, when, and from where.

Organizations must be able to answer "who changed this, and from which address"
after the fact, so every login (and failure), credential or device change,
admin action, partnership change and federation refusal is recorded here.
Records never hold secrets: details are scrubbed of anything that looks like a
password or token before they are stored, so a leaked audit export leaks no
credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.records.audit import AuditEntry

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.storage.audit import AuditStore

__all__ = ["AuditEntry", "AuditLog", "scrub"]

# Keys whose values are credentials in any request or response we might log.
_SECRET_MARKERS = ("password", "token", "secret", "mac", "key", "nonce")


def scrub(value: Any) -> Any:
    """A copy of `value` with every credential-like field replaced."""
    if isinstance(value, dict):
        return {
            k: ("<redacted>" if any(m in str(k).lower() for m in _SECRET_MARKERS) else scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


class AuditLog:
    def __init__(self, store: AuditStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        ip: str | None = None,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry. `action` is a dotted name (``login``, ``login.failed``,
        ``admin.user.deactivate``, ``partnership.accept``, ``federation.refused``);
        `outcome` is ``ok`` or ``refused``/``failed``."""
        await self.store.append(
            self.clock.time_ms(), action, actor, target, ip, outcome, scrub(details or {})
        )

    async def query(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since_ts: int | None = None,
        until_ts: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first. `action` matches exactly or as a prefix ending in '.'
        (``admin.`` is every admin action); `before_id` pages backwards."""
        return await self.store.query(
            action=action, actor=actor, target=target, since_ts=since_ts, until_ts=until_ts,
            before_id=before_id, limit=limit,
        )
