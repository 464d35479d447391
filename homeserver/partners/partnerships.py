"""Partnerships between organizations' servers: requested, accepted or declined,
revoked.

A partnership is between two servers, one row per peer on each side. Either
side's admins ask (``request``); the peer's admins are told in their server
notice room and answer (``accept``/``decline``); either side may end it at any
time (``revoke``, which also cancels a pending request). Under the
``partners`` federation policy an active partnership is what lets two servers
federate, so the set of active partners is cached in memory: the policy checks
it on every request, and a revoke takes effect the moment it is written.

The peers talk over signed federation requests under
``/_matrix/federation/unstable/org.accord.partners/v1/`` (see
``homeserver/api/federation/partners.py``); the peer is always the X-Matrix
origin, never a body field. Replays are harmless:

- a request ID a peer used once is remembered, so a replayed request cannot
  reopen a request our admins declined;
- an answer must name our pending request, so a replayed "accept" cannot revive
  a partnership that was revoked since;
- a revoke must name the current partnership, so a replayed revoke cannot end
  a partnership made after it.

When both sides ask each other at once, both have consented: the partnership
becomes active, known by both request IDs.

Every step is audited (``partnership.*``); answers and revokes are delivered to
the peer in the background, since our side's change must not wait for (or be
undone by) a peer that is down. They are queued in the database by the same
transaction as the change they announce and delivered to each peer in order,
retried with the federation backoff (``federation.retry_base_s`` and
``retry_cap_s``) across restarts until the peer takes them, refuses them for
good (4xx), or they are older than a week.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from federation.client import (
    DestinationRefusedError,
    FederationError,
    RemoteError,
    quote_path_segment,
)
from homeserver.errors import MatrixError, invalid_param, limit_exceeded, not_found
from homeserver.identifiers import is_valid_server_name
from homeserver.partners.notices import ServerNotices
from homeserver.partners.policy import PARTNERS_PREFIX
from homeserver.records.partnerships import (
    ACTIVE,
    DECLINED,
    DIRECTIONS,
    FAILED,
    INBOUND,
    OUTBOUND,
    PENDING,
    REVOKED,
    STATES,
    Delivery,
    Partnership,
)
from homeserver.storage.partnerships import PartnershipStore

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.audit import AuditLog
    from homeserver.clock import Clock
    from homeserver.config import FederationConfig, OrganizationConfig

logger = logging.getLogger(__name__)

API_PREFIX = PARTNERS_PREFIX + "v1/"
MAX_MESSAGE = 2000
MAX_ORGANIZATION = 128
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
# A peer may open a new request at most this often (a flood of fresh request IDs
# would otherwise grow our tables and spam our admins).
MIN_INBOUND_REQUEST_INTERVAL_S = 60.0
# An answer or revoke the peer has not taken after this long is given up (logged).
DELIVERY_MAX_AGE_MS = 7 * 24 * 3600 * 1000


def bad_state(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_STATE", message)


def clean_text(value: Any, name: str, limit: int, *, required: bool = False) -> str | None:
    """A human-written field from a hostile source: a string of at most `limit`
    characters, no control characters except line breaks and tabs (they would
    garble the notice shown to admins)."""
    if value is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing required field '{name}'")
        return None
    if not isinstance(value, str):
        raise MatrixError(400, "M_BAD_JSON", f"Field '{name}' must be a string")
    value = unicodedata.normalize("NFC", value).strip()
    if len(value) > limit:
        raise MatrixError(400, "M_TOO_LARGE", f"Field '{name}' is longer than {limit} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\t" for c in value):
        raise invalid_param(f"Field '{name}' contains control characters")
    if required and not value:
        raise MatrixError(400, "M_MISSING_PARAM", f"Field '{name}' must not be empty")
    return value or None


def check_request_id(request_id: str) -> str:
    if not REQUEST_ID_RE.fullmatch(request_id):
        raise invalid_param("A request ID is 1-64 characters of A-Z a-z 0-9 . _ ~ -")
    return request_id


class Partnerships:
    def __init__(
        self, *, store: PartnershipStore, server_name: str, organization_name: str | None,
        federation: FederationConfig, clock: Clock, audit: AuditLog,
    ) -> None:
        self.server_name = server_name
        self._organization_name = organization_name
        self.federation = federation  # enabled, and the delivery retry backoff
        self.clock = clock
        self.audit = audit
        self.store = store
        # Connected once built: the federation client enforces the federation policy,
        # which asks this service (a cycle); the sender and the notices come later.
        self._federation_client: FederationClient | None = None
        self._drop_destination: Callable[[str], Awaitable[None]] | None = None
        self._notices: ServerNotices | None = None
        self._active: set[str] = set()
        self._lock = asyncio.Lock()  # partnership changes are rare: one at a time
        self._last_inbound_request: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}  # peer -> its delivery task
        self._delivery_dirty: set[str] = set()  # peers with a delivery queued since their task looked
        self._running = False
        # Told the number of active partners whenever it may have changed (the
        # analytics' network-growth series); called under the service's lock.
        self.on_active_changed: list[Callable[[int], Awaitable[None]]] = []

    async def _active_changed(self) -> None:
        for listener in self.on_active_changed:
            try:
                await listener(len(self._active))
            except Exception:  # a statistic must never undo or block a partnership change
                logger.exception("partners: a listener of the active partners failed")

    def connect(
        self, *, client: FederationClient | None, drop_destination: Callable[[str], Awaitable[None]],
        notices: ServerNotices,
    ) -> None:
        """What is built after this service: the federation client (None when
        federation is off), the sender's queue drop for a revoked peer, and the
        admins' notice room."""
        self._federation_client = client
        self._drop_destination = drop_destination
        self._notices = notices

    @property
    def notices(self) -> ServerNotices:
        assert self._notices is not None, "Partnerships.connect was not called"
        return self._notices

    # --- lifecycle ---

    async def start(self) -> None:
        self._active = set(await self.store.active_servers())
        self._running = True
        for server_name in await self.store.delivery_servers():  # left over from before a restart
            self._wake_delivery(server_name)

    async def stop(self) -> None:
        """Cancel deliveries still retrying; they stay queued for the next start."""
        self._running = False
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def wait_for_deliveries(self) -> None:
        """Wait until every answer and revoke queued for peers was delivered or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- what the policy and others ask ---

    def is_partner_cached(self, server_name: str) -> bool:
        return server_name in self._active

    async def is_partner(self, server_name: str) -> bool:
        return server_name in self._active

    async def active_partners(self) -> list[str]:
        return sorted(self._active)

    async def get(self, server_name: str) -> Partnership | None:
        return await self.store.get(server_name)

    async def list(self, *, state: str | None = None, direction: str | None = None) -> list[Partnership]:
        if state is not None and state not in STATES:
            raise invalid_param(f"Unknown state {state!r}; one of {', '.join(STATES)}")
        if direction is not None and direction not in DIRECTIONS:
            raise invalid_param(f"Unknown direction {direction!r}; one of {', '.join(DIRECTIONS)}")
        return await self.store.list(state=state, direction=direction)

    async def set_organization(self, organization: OrganizationConfig) -> None:
        """Introduce us by the organization's name as an admin last set it."""
        self._organization_name = organization.name

    @property
    def organization_name(self) -> str:
        return self._organization_name or self.server_name

    # --- our admins' actions ---

    async def request(
        self, server_name: Any, *, by: str, message: Any = None, ip: str | None = None
    ) -> Partnership:
        """Ask `server_name` for a partnership. Asking a server that asked us
        accepts its request; asking again while ours is pending changes nothing."""
        server_name = self._check_peer(server_name)
        message = clean_text(message, "message", MAX_MESSAGE)
        async with self._lock:
            cur = await self.store.get(server_name)
            if cur is not None and cur.state == ACTIVE:
                return cur
            if cur is not None and cur.state == PENDING and cur.direction == OUTBOUND:
                return cur
            if cur is not None and cur.state == PENDING and cur.direction == INBOUND:
                return await self._accept_locked(cur, by, ip)
            now = self.clock.time_ms()
            p = Partnership(
                server_name, PENDING, OUTBOUND, secrets.token_urlsafe(18), None, None, message,
                by, now, now, by,
            )
            await self.store.save(p)
        await self.audit.record(
            "partnership.request", actor=by, target=server_name, ip=ip, details={"request_id": p.request_id}
        )
        body: dict[str, Any] = {"organization": self.organization_name}
        if message:
            body["message"] = message
        try:
            answer = await self._client().put_json(
                server_name, API_PREFIX + "request/" + quote_path_segment(p.request_id), body
            )
        except FederationError as e:
            async with self._lock:
                cur = await self.store.get(server_name)
                if cur is not None and cur.request_id == p.request_id and cur.state == PENDING:
                    await self.store.save(cur.evolve(state=FAILED, updated_ts=self.clock.time_ms()))
            await self.audit.record(
                "partnership.request", actor=by, target=server_name, ip=ip, outcome="failed",
                details={"request_id": p.request_id, "error": str(e)[:300]},
            )
            # The peer's own refusal (403, 429, ...) is passed on; anything else
            # (unreachable, our signature refused) is a bad gateway.
            if isinstance(e, RemoteError) and 400 <= e.status < 500 and e.status != 401:
                status, errcode = e.status, e.errcode
            else:
                status, errcode = 502, "M_UNKNOWN"
            raise MatrixError(status, errcode, f"{server_name} did not take the partnership request: {e}") from None
        # The peer may have asked us at the same moment and answered "active" at once.
        if isinstance(answer, dict) and answer.get("state") == ACTIVE:
            await self.received_response(server_name, p.request_id, accept=True)
        return await self.store.get(server_name) or p

    async def accept(self, server_name: str, *, by: str, ip: str | None = None) -> Partnership:
        async with self._lock:
            cur = await self._current(server_name)
            if cur.direction == INBOUND and cur.state == ACTIVE:
                await self.store.add_delivery(self._delivery(cur.server_name, "respond", cur.request_id, accept=True))
                self._wake_delivery(cur.server_name)
                return cur  # already accepted: only tell the peer again
            if not (cur.direction == INBOUND and cur.state == PENDING):
                raise bad_state(f"There is no pending request from {server_name} to accept")
            return await self._accept_locked(cur, by, ip)

    async def decline(self, server_name: str, *, by: str, ip: str | None = None) -> Partnership:
        async with self._lock:
            cur = await self._current(server_name)
            if cur.direction == INBOUND and cur.state == DECLINED:
                return cur
            if not (cur.direction == INBOUND and cur.state == PENDING):
                raise bad_state(f"There is no pending request from {server_name} to decline")
            p = cur.evolve(state=DECLINED, updated_ts=self.clock.time_ms(), updated_by=by)
            await self.store.save(p, deliver=self._delivery(server_name, "respond", p.request_id, accept=False))
        self._wake_delivery(server_name)
        await self.audit.record(
            "partnership.decline", actor=by, target=server_name, ip=ip, details={"request_id": p.request_id}
        )
        return p

    async def cancel(self, server_name: str, *, by: str, ip: str | None = None) -> Partnership:
        """Withdraw our pending request to `server_name` (and only that: an active
        partnership is ended with `revoke`, a request to us is declined). The peer is
        told as of a revoke, in the background; a request that failed to reach it is
        simply closed."""
        async with self._lock:
            cur = await self._current(server_name)
            if cur.direction == OUTBOUND and cur.state == REVOKED:
                return cur  # a retry
            if not (cur.direction == OUTBOUND and cur.state in (PENDING, FAILED)):
                raise bad_state(f"There is no pending request of ours to {server_name} to cancel")
            deliver = None
            if cur.state == PENDING:
                deliver = Delivery(server_name, "revoke", cur.request_id, {}, self.clock.time_ms())
            p = await self._revoke_locked(cur, by, deliver)
        self._wake_delivery(server_name)
        await self.audit.record(
            "partnership.cancel", actor=by, target=server_name, ip=ip,
            details={"request_id": p.request_id, "was": cur.state},
        )
        return p

    async def revoke(
        self, server_name: str, *, by: str, reason: Any = None, ip: str | None = None
    ) -> Partnership:
        """End a partnership, or withdraw a pending request, at once: federation
        with the server stops before this returns; the peer is told in the background."""
        reason = clean_text(reason, "reason", MAX_MESSAGE)
        async with self._lock:
            cur = await self._current(server_name)
            if cur.state == REVOKED:
                return cur
            if cur.state not in (ACTIVE, PENDING):
                raise bad_state(f"There is no partnership or pending request with {server_name} to revoke")
            body = {"reason": reason} if reason else {}
            now = self.clock.time_ms()
            p = await self._revoke_locked(cur, by, Delivery(server_name, "revoke", cur.request_id, body, now))
        self._wake_delivery(server_name)
        await self.audit.record(
            "partnership.revoke", actor=by, target=server_name, ip=ip,
            details={"request_id": p.request_id, "was": cur.state, "reason": reason},
        )
        return p

    # --- what peers tell us (the origin is the verified X-Matrix origin) ---

    async def received_request(
        self, origin: str, request_id: str, organization: Any, message: Any
    ) -> dict[str, Any]:
        check_request_id(request_id)
        org = clean_text(organization, "organization", MAX_ORGANIZATION, required=True)
        msg = clean_text(message, "message", MAX_MESSAGE)
        notice: str | None = None
        async with self._lock:
            cur = await self.store.get(origin)
            if await self.store.seen_request_id(origin, request_id):
                # A retry (same answer as before) or a replay (no effect).
                state = cur.state if cur is not None and cur.names(request_id) else "superseded"
                return {"state": state}
            now_s = self.clock.monotonic()
            last = self._last_inbound_request.get(origin)
            if last is not None and now_s - last < MIN_INBOUND_REQUEST_INTERVAL_S:
                raise limit_exceeded(int((MIN_INBOUND_REQUEST_INTERVAL_S - (now_s - last)) * 1000))
            self._last_inbound_request[origin] = now_s
            now = self.clock.time_ms()
            if cur is not None and (cur.state == ACTIVE or (cur.state == PENDING and cur.direction == OUTBOUND)):
                # Already partners (the peer lost track), or both asked at once:
                # both sides consent, and either request ID names the partnership.
                p = cur.evolve(
                    state=ACTIVE, alt_request_id=request_id, organization=org, updated_ts=now,
                    updated_by=origin,
                )
                await self.store.save(
                    p, seen_request_id=request_id, deliver=self._delivery(origin, "respond", request_id, accept=True)
                )
                self._active.add(origin)
                await self._active_changed()
                action, details = "partnership.accept", {"request_id": request_id, "mutual": True}
                if cur.state != ACTIVE:
                    notice = (
                        f"{org} ({origin}) asked for a partnership while our request to them was"
                        " pending: both sides agreed, so the partnership is now active."
                    )
            else:
                p = Partnership(origin, PENDING, INBOUND, request_id, None, org, msg, None, now, now, origin)
                await self.store.save(p, seen_request_id=request_id)
                action, details = "partnership.request.received", {"request_id": request_id}
                notice = _request_notice(org, origin, msg)
        await self.audit.record(action, actor=origin, target=origin, details=details)
        if notice is not None:
            await self.notices.notify_admins(notice)
        if p.state == ACTIVE:
            self._wake_delivery(origin)
        return {"state": p.state}

    async def received_response(self, origin: str, request_id: str, *, accept: bool) -> dict[str, Any]:
        check_request_id(request_id)
        target = ACTIVE if accept else DECLINED
        async with self._lock:
            cur = await self.store.get(origin)
            if cur is None or not cur.names(request_id):
                raise not_found("No partnership request with this ID")
            if cur.state == target or (cur.state == ACTIVE and accept):
                return {"state": cur.state}  # a retry
            if not (cur.state == PENDING and cur.direction == OUTBOUND and cur.request_id == request_id):
                raise bad_state(f"The request is {cur.state}: it can no longer be answered")
            p = cur.evolve(state=target, updated_ts=self.clock.time_ms(), updated_by=origin)
            await self.store.save(p)
            if accept:
                self._active.add(origin)
                await self._active_changed()
        await self.audit.record(
            "partnership.accept" if accept else "partnership.decline", actor=origin, target=origin,
            details={"request_id": request_id},
        )
        verdict = "accepted: the partnership is now active" if accept else "declined"
        await self.notices.notify_admins(f"{origin} {verdict} our partnership request.")
        return {"state": p.state}

    async def received_revoke(self, origin: str, request_id: str, reason: Any) -> dict[str, Any]:
        check_request_id(request_id)
        reason_text = clean_text(reason, "reason", MAX_MESSAGE)
        async with self._lock:
            cur = await self.store.get(origin)
            if cur is None or not cur.names(request_id):
                raise not_found("No partnership with this ID")
            if cur.state not in (ACTIVE, PENDING):
                return {"state": cur.state}  # a retry, or nothing left to end
            was = cur.state
            p = await self._revoke_locked(cur, origin)
        await self.audit.record(
            "partnership.revoke", actor=origin, target=origin,
            details={"request_id": request_id, "was": was, "reason": reason_text},
        )
        what = "ended the partnership" if was == ACTIVE else "withdrew its partnership request"
        text = f"{origin} {what}; federation with it has stopped."
        if reason_text:
            text += f"\nTheir reason: {reason_text}"
        await self.notices.notify_admins(text)
        return {"state": p.state}

    # --- internals ---

    def _check_peer(self, server_name: Any) -> str:
        if not isinstance(server_name, str) or not is_valid_server_name(server_name):
            raise invalid_param("'server_name' must be a valid server name")
        if server_name == self.server_name:
            raise invalid_param("A server cannot be its own partner")
        if not self.federation.enabled:
            raise MatrixError(403, "M_FORBIDDEN", "Federation is disabled on this server")
        return server_name

    async def _current(self, server_name: str) -> Partnership:
        cur = await self.store.get(server_name)
        if cur is None:
            raise not_found(f"No partnership with {server_name}")
        return cur

    async def _accept_locked(self, cur: Partnership, by: str, ip: str | None) -> Partnership:
        p = cur.evolve(state=ACTIVE, updated_ts=self.clock.time_ms(), updated_by=by)
        await self.store.save(p, deliver=self._delivery(p.server_name, "respond", p.request_id, accept=True))
        self._active.add(p.server_name)
        await self._active_changed()
        self._wake_delivery(p.server_name)
        await self.audit.record(
            "partnership.accept", actor=by, target=p.server_name, ip=ip, details={"request_id": p.request_id}
        )
        return p

    async def _revoke_locked(self, cur: Partnership, by: str, deliver: Delivery | None = None) -> Partnership:
        p = cur.evolve(state=REVOKED, updated_ts=self.clock.time_ms(), updated_by=by)
        await self.store.save(p, deliver=deliver)
        self._active.discard(p.server_name)  # the policy refuses the server from now on
        await self._active_changed()
        assert self._drop_destination is not None, "Partnerships.connect was not called"
        await self._drop_destination(p.server_name)
        return p

    def _client(self) -> Any:
        client = self._federation_client
        if client is None:
            raise MatrixError(403, "M_FORBIDDEN", "Federation is disabled on this server")
        return client

    def _delivery(self, server_name: str, verb: str, request_id: str, *, accept: bool) -> Delivery:
        body = {"response": "accept" if accept else "decline"}
        return Delivery(server_name, verb, request_id, body, self.clock.time_ms())

    def _wake_delivery(self, server_name: str) -> None:
        """Deliver what is queued for the peer, in the background (one task per peer,
        so the peer hears of our changes in the order we made them)."""
        if self._federation_client is None:
            return
        self._delivery_dirty.add(server_name)
        if server_name in self._workers or not self._running:
            return  # its task will look again; or start() will
        task = asyncio.ensure_future(self._deliver_queued(server_name))
        self._workers[server_name] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_queued(self, server_name: str) -> None:
        fed = self.federation
        failures = 0
        try:
            while True:
                self._delivery_dirty.discard(server_name)
                try:
                    d = await self.store.next_delivery(server_name)
                    if d is None:
                        if server_name in self._delivery_dirty:
                            continue  # queued while we read
                        return
                    error = await self._try_delivery(d)
                    if error is not None and self.clock.time_ms() - d.created_ts < DELIVERY_MAX_AGE_MS:
                        failures += 1
                        delay = min(fed.retry_cap_s, fed.retry_base_s * 2 ** min(failures - 1, 40))
                        logger.info("partners: %s of %s to %s failed (%s); retry %d in %.1fs",
                                    d.verb, d.request_id, server_name, error, failures, delay)
                        await asyncio.sleep(delay)
                        continue
                    if error is not None:
                        logger.warning("partners: gave up telling %s of our %s of %s: %s",
                                       server_name, d.verb, d.request_id, error)
                    failures = 0
                    await self.store.remove_delivery(d.seq)
                except Exception:
                    # A storage failure or a bug: keep the queue and try again later.
                    logger.exception("partners: delivering to %s failed", server_name)
                    failures += 1
                    await asyncio.sleep(min(fed.retry_cap_s, fed.retry_base_s * 2 ** min(failures - 1, 40)))
        finally:
            self._workers.pop(server_name, None)

    async def _try_delivery(self, d: Delivery) -> Exception | None:
        """Send one delivery: None once the peer took it or refused it for good
        (a 4xx other than 401 and 429: no retry can change its answer), else the
        error. A 401 is retried: the peer may not have been able to fetch our keys
        yet (we send as soon as we start, before our key server listens)."""
        path = API_PREFIX + d.verb + "/" + quote_path_segment(d.request_id)
        try:
            await self._client().put_json(d.server_name, path, d.body)
        except RemoteError as e:
            if 400 <= e.status < 500 and e.status not in (401, 429):
                logger.warning("partners: %s refused our %s of %s: %s", d.server_name, d.verb, d.request_id, e)
                return None
            return e
        except DestinationRefusedError:
            logger.warning("partners: our policy refuses %s; dropping our %s of %s",
                           d.server_name, d.verb, d.request_id)
            return None
        except FederationError as e:
            return e
        return None


def _request_notice(org: str | None, origin: str, message: str | None) -> str:
    lines = [f"{org} ({origin}) asks for a partnership with this server."]
    if message:
        lines.append(f"Their message: {message}")
    lines.append(
        "Partners federate with us: their users can join our federated rooms and talk with ours."
        f" To accept: POST /_accord/admin/v1/partnerships/{origin}/accept;"
        f" to decline: POST /_accord/admin/v1/partnerships/{origin}/decline"
        " (both with a server admin's access token)."
    )
    return "\n".join(lines)
