"""The federation policy: which servers we talk to at all.

Under ``open`` any Matrix server federates, as the spec intends. Under
``partners`` only servers with an active partnership, plus the config's static
``allowed_servers``, do; every other server is refused on every path, in both
directions (the X-Matrix middleware for inbound requests, the federation client
and the sender for outbound ones).

A few endpoints stay reachable whatever the policy, because without them no
partnership could ever be set up: the key API (to verify a signed request at
all), ``/version``, and the unstable namespaces through which partnerships are
requested and the partner directory is shared.

Refusals are audited, but at most one record per server and direction per
minute, so a hostile server cannot fill the audit table by hammering us.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Protocol

from homeserver.errors import forbidden

if TYPE_CHECKING:
    from homeserver.audit import AuditLog

logger = logging.getLogger(__name__)

OPEN = "open"
PARTNERS = "partners"

PARTNERS_PREFIX = "/_matrix/federation/unstable/org.accord.partners/"
DIRECTORY_PREFIX = "/_matrix/federation/unstable/org.accord.directory/"
# Reachable under any policy: what establishing a partnership needs.
EXEMPT_PREFIXES = ("/_matrix/key/", PARTNERS_PREFIX, DIRECTORY_PREFIX)
EXEMPT_PATHS = frozenset({"/_matrix/federation/v1/version"})

REFUSAL_RECORD_INTERVAL_S = 60.0
MAX_REFUSAL_KEYS = 10_000


class PartnerSet(Protocol):
    """What the policy needs of the partnership service: a cheap, synchronous
    membership test on its in-memory cache of active partners."""

    def is_partner_cached(self, server_name: str) -> bool: ...


def is_exempt_path(path: str) -> bool:
    """Whether `path` (no query string) is reachable whatever the policy.

    A path with dot segments is never exempt, so ``/_matrix/key/../federation/...``
    cannot smuggle a request past the policy however a router would resolve it.
    """
    if "/." in path or "\\" in path:
        return False
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


class FederationPolicy:
    def __init__(
        self,
        *,
        mode: str,
        server_name: str,
        allowed_servers: Collection[str],
        partners: PartnerSet,
        audit: AuditLog,
        monotonic: Callable[[], float],
    ) -> None:
        if mode not in (OPEN, PARTNERS):
            raise ValueError(f"unknown federation policy {mode!r}")
        self.mode = mode
        self.server_name = server_name
        self.allowed_servers = frozenset(allowed_servers)
        self.partners = partners
        self.audit = audit
        self.monotonic = monotonic
        self._last_recorded: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        # Told of every refusal, not only the audited ones (the console's federation health).
        self.refusal_listeners: list[Callable[[str], None]] = []

    def server_allowed(self, server_name: str) -> bool:
        """Whether we federate with `server_name` at all (ignoring exempt paths)."""
        if self.mode == OPEN or server_name == self.server_name:
            return True
        return server_name in self.allowed_servers or self.partners.is_partner_cached(server_name)

    def request_allowed(self, server_name: str, path: str) -> bool:
        return self.server_allowed(server_name) or is_exempt_path(path)

    # --- the enforcement points ---

    def _refused(self, server_name: str) -> None:
        for listener in self.refusal_listeners:
            listener(server_name)

    def allow_outbound(self, destination: str, path: str) -> bool:
        """The FederationClient's policy callable: False refuses (and audits) the request."""
        path = path.split("?", 1)[0]
        if self.request_allowed(destination, path):
            return True
        self.note_refusal(destination, "outbound", path)
        return False

    def allow_destination(self, destination: str, what: str) -> bool:
        """For the sender, before queueing anything for `destination`."""
        if self.server_allowed(destination):
            return True
        self.note_refusal(destination, "outbound", what)
        return False

    async def check_inbound(self, origin: str, path: str, ip: str | None = None) -> None:
        """For the X-Matrix middleware, once the origin's signature verified:
        403 M_FORBIDDEN for a server we do not federate with."""
        if self.request_allowed(origin, path):
            return
        self._refused(origin)
        if self._should_record(origin, "inbound"):
            await self.audit.record(
                "federation.refused", actor=origin, target=origin, ip=ip, outcome="refused",
                details={"direction": "inbound", "path": path[:200], "policy": self.mode},
            )
        raise forbidden(f"This server only federates with its partners; {origin} is not one")

    # --- audit, deduplicated ---

    def note_refusal(self, server_name: str, direction: str, what: str) -> None:
        """Audit a refusal from synchronous code (the client's policy callable):
        the record is written by a task, at most once per server per minute."""
        self._refused(server_name)
        if not self._should_record(server_name, direction):
            return
        logger.info("federation policy: refused %s %s (%s)", direction, server_name, what)
        coro = self.audit.record(
            "federation.refused", actor=None, target=server_name, outcome="refused",
            details={"direction": direction, "path": what[:200], "policy": self.mode},
        )
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop: nothing to record with
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("federation policy: could not audit a refusal", exc_info=task.exception())

    def _should_record(self, server_name: str, direction: str) -> bool:
        now = self.monotonic()
        key = (server_name, direction)
        last = self._last_recorded.get(key)
        if last is not None and now - last < REFUSAL_RECORD_INTERVAL_S:
            return False
        self._last_recorded[key] = now
        self._last_recorded.move_to_end(key)
        while len(self._last_recorded) > MAX_REFUSAL_KEYS:
            self._last_recorded.popitem(last=False)  # oldest first: bounded memory under a flood
        return True

    async def flush(self) -> None:
        """Wait for pending refusal records (before the database closes)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
