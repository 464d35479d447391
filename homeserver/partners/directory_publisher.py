"""Publishing our organization's profile to the directories in
``partner_directory.publish_to``.

One task per directory publishes at startup and then again every third of the
TTL that directory reports, so an entry is refreshed twice before it could
expire even if one refresh fails; failures retry with the federation backoff.
The profile is rebuilt for each publish, so a config change takes effect at the
restart that loads it, an admin's edit at once (`set_organization`, from
homeserver/partners/organization.py) and a change of partners (``publish_partners``) at the next
refresh, or at once through `refresh`. A directory dropped from ``publish_to``
since the last run is sent a withdrawal at startup: the publications table
remembers where we were listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from federation.client import FederationError
from homeserver.errors import MatrixError
from homeserver.identifiers import is_valid_server_name
from homeserver.partners.directory_profile import MAX_PARTNERS, validate_profile
from homeserver.storage.partner_directory import PublicationStore

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.clock import Clock
    from homeserver.config import FederationConfig, OrganizationConfig, PartnerDirectoryConfig
    from homeserver.partners.directory import PartnerDirectory

logger = logging.getLogger(__name__)

DIRECTORY_PREFIX = "/_matrix/federation/unstable/org.accord.directory/v1"
PROFILE_PATH = DIRECTORY_PREFIX + "/profile"
MIN_REFRESH_S = 60.0
MAX_REFRESH_S = 86_400.0


class DirectoryPublisher:
    def __init__(
        self, *, config: PartnerDirectoryConfig, organization: OrganizationConfig,
        federation: FederationConfig, server_name: str, publications: PublicationStore,
        directory: PartnerDirectory, client: FederationClient | None,
        active_partners: Callable[[], Awaitable[list[str]]] | None, clock: Clock,
    ) -> None:
        self.config = config
        self.organization = organization
        self.federation = federation  # the retry backoff
        self.server_name = server_name
        self.publications = publications
        self.directory = directory  # our own directory, published to without a round trip
        self.client = client  # None when federation is off
        self.active_partners = active_partners  # None without the partnerships service
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._stale: asyncio.Task[None] | None = None
        self._started = False
        # Set once our listeners accept connections (`reachable`). A directory that
        # receives our signed request fetches our keys from us at once; asked before we
        # listen, that fetch fails, and it then refuses our requests until its key-fetch
        # interval passes. So nothing goes to another server's directory before this.
        self._reachable = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return bool(self.organization.name) and self.client is not None

    async def profile(self) -> dict[str, Any]:
        """The profile we publish now: the config's organization section, plus our
        active partners when the organization chose to publish them."""
        org = dataclasses.asdict(self.organization)
        publish_partners = org.pop("publish_partners")
        if publish_partners:
            org["partners"] = await self._active_partners()
        return validate_profile(org)

    async def _active_partners(self) -> list[str]:
        # The partnerships service is optional: without it we have no partners to list.
        active = self.active_partners
        if active is None:
            return []
        names = [n for n in await active() if isinstance(n, str) and is_valid_server_name(n)]
        return sorted(set(names))[:MAX_PARTNERS]

    async def start(self) -> None:
        # Withdrawals first, and even when no profile is configured any more:
        # removing the organization section must unlist us, not leave us listed.
        publish_to = self.config.publish_to if self.enabled else []
        stale = [
            p.directory for p in await self.publications.list()
            if p.directory not in publish_to and not p.withdrawn
        ]
        if stale:
            self._stale = asyncio.create_task(self._withdraw_stale(stale))
            self._tasks["\0stale"] = self._stale
        for directory in publish_to:
            self._start_loop(directory)
        self._started = True

    def reachable(self) -> None:
        """Our listeners are up (HomeServer.start_listeners): other directories may be told."""
        self._reachable.set()

    async def _until_reachable(self, directory: str) -> None:
        if directory != self.server_name or not self.directory.serving:
            await self._reachable.wait()

    async def wait_for_withdrawals(self) -> None:
        """Until the startup withdrawals from dropped directories have been tried."""
        if self._stale is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._stale)

    async def stop(self) -> None:
        self._started = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _start_loop(self, directory: str) -> None:
        if directory in self._tasks and not self._tasks[directory].done():
            return
        self._wake[directory] = asyncio.Event()
        self._tasks[directory] = asyncio.create_task(
            self._loop(directory), name=f"partner-directory-publish:{directory}"
        )

    async def set_organization(self, organization: OrganizationConfig) -> None:
        """Publish `organization` from now on (an admin edited our profile): republished
        to every configured directory at once, or published for the first time if the
        profile only now has a name."""
        self.organization = organization
        if not self._started:
            return  # start() publishes it
        if self.enabled:
            for directory in self.config.publish_to:
                self._start_loop(directory)
        self.refresh()

    def refresh(self) -> None:
        """Republish everywhere now (e.g. after our partner list changed)."""
        for event in self._wake.values():
            event.set()

    async def _loop(self, directory: str) -> None:
        failures = 0
        fed = self.federation
        wake = self._wake[directory]
        await self._until_reachable(directory)
        while True:
            wake.clear()  # before publishing: a refresh asked for meanwhile is not lost
            try:
                result = await self.publish_to(directory)
            except Exception:  # a database hiccup must not end the refreshes for good
                logger.exception("publishing our profile to %s failed", directory)
                result = {"ok": False}
            if result["ok"]:
                failures = 0
                delay = min(max(result["ttl_s"] / 3, MIN_REFRESH_S), MAX_REFRESH_S)
            else:
                failures += 1
                delay = min(fed.retry_base_s * 2 ** min(failures - 1, 30), fed.retry_cap_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)

    async def _withdraw_stale(self, directories: list[str]) -> None:
        for directory in directories:
            await self._until_reachable(directory)
            result = await self.withdraw_from(directory)
            if result["ok"]:
                await self.publications.forget(directory)

    async def publish_to(self, directory: str) -> dict[str, Any]:
        """Publish once; the outcome is recorded, never raised (a directory being
        down must not break whoever asked)."""
        now = self.clock.time_ms()
        try:
            profile = await self.profile()
            answer = await self._send_profile(directory, profile)
        except (FederationError, MatrixError) as e:
            error = getattr(e, "message", None) or str(e)
            logger.warning("publishing our profile to %s failed: %s", directory, error)
            await self.publications.record_failure(directory, now, error)
            return {"directory": directory, "ok": False, "error": error}
        ttl_s = answer.get("ttl_s") if isinstance(answer, dict) else None
        if type(ttl_s) is not int or ttl_s <= 0:
            ttl_s = int(MAX_REFRESH_S)
        expires = answer.get("expires_ts") if isinstance(answer, dict) else None
        expires = expires if type(expires) is int else None
        verified = isinstance(answer, dict) and answer.get("verified") is True
        await self.publications.record_success(directory, now, expires, verified)
        return {"directory": directory, "ok": True, "ttl_s": ttl_s, "expires_ts": expires, "verified": verified}

    async def _send_profile(self, directory: str, profile: dict[str, Any]) -> Any:
        if directory == self.server_name and self.directory.serving:
            return await self.directory.publish(directory, profile)
        client = self.client
        assert client is not None
        return await client.put_json(directory, PROFILE_PATH, profile)

    async def publish_all(self) -> list[dict[str, Any]]:
        """Publish to every configured directory now; (re)starts withdrawn ones."""
        if not self.enabled:
            raise MatrixError(400, "M_INVALID_PARAM", "No organization profile is configured")
        results = await asyncio.gather(*(self.publish_to(d) for d in self.config.publish_to))
        for directory in self.config.publish_to:
            self._start_loop(directory)
        return list(results)

    async def withdraw_from(self, directory: str) -> dict[str, Any]:
        """Remove our entry from one directory and stop refreshing it there (until
        `publish_all` or the next restart with it still in ``publish_to``)."""
        task = self._tasks.pop(directory, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        now = self.clock.time_ms()
        try:
            if directory == self.server_name and self.directory.serving:
                await self.directory.withdraw(directory)
            else:
                client = self.client
                if client is None:
                    raise MatrixError(400, "M_INVALID_PARAM", "Federation is disabled")
                await client.request("DELETE", directory, PROFILE_PATH)
        except (FederationError, MatrixError) as e:
            error = getattr(e, "message", None) or str(e)
            await self.publications.record_failure(directory, now, "withdrawal failed: " + error)
            return {"directory": directory, "ok": False, "error": error}
        await self.publications.record_withdrawn(directory, now)
        return {"directory": directory, "ok": True, "withdrawn": True}

    async def withdraw(self, directory: str | None = None) -> list[dict[str, Any]]:
        targets = [directory] if directory else list(self.config.publish_to)
        return [await self.withdraw_from(d) for d in targets]

    async def status(self) -> dict[str, Any]:
        return {
            "publish_to": list(self.config.publish_to),
            "publications": [p.to_json() for p in await self.publications.list()],
        }
