"""Token-bucket rate limiting per action and per user, client IP or origin server.

Every request a client or another server can use to make this server work is
charged to a bucket (config ``rate_limits.actions``): users per user (bots and other
exempt users never), unauthenticated requests per client IP, inbound federation per
origin server. An empty bucket is 429 M_LIMIT_EXCEEDED carrying both a Retry-After
header and the body's ``retry_after_ms`` (deprecated since v1.10, still read by
older clients); see `homeserver.errors.limit_exceeded`.

Buckets live in memory (they are cheap to lose on restart) and are dropped once
refilled, so memory grows with the number of recently active keys only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from homeserver.config import RateLimit, RateLimitConfig
from homeserver.errors import limit_exceeded


class RateLimiter:
    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # -> (tokens, updated)
        self._exempt = set(config.exempt_users)
        self._overrides: dict[str, RateLimit] = {}  # user -> an admin's message rate for them
        self._ops = 0

    def set_override(self, user_id: str, per_second: int, burst: int) -> None:
        """Give one user their own message rate (the admin API's override_ratelimit);
        a rate of 0 means unlimited, as in Synapse."""
        self._overrides[user_id] = RateLimit(per_second=float(per_second), burst=max(1, burst))
        self._buckets.pop(("message", user_id), None)  # a new rate starts with a full burst

    def clear_override(self, user_id: str) -> None:
        self._overrides.pop(user_id, None)
        self._buckets.pop(("message", user_id), None)

    def set_exempt(self, user_id: str, exempt: bool) -> None:
        if exempt:
            self._exempt.add(user_id)
        else:
            self._exempt.discard(user_id)

    def exempt(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self._exempt

    def check(self, action: str, key: str, *, exempt: bool = False, cost: float = 1.0) -> None:
        """Take `cost` tokens or raise 429 M_LIMIT_EXCEEDED with the wait until one is back."""
        if not self.config.enabled or exempt:
            return
        limit = self._overrides.get(key) if action == "message" else None
        if limit is not None and limit.per_second <= 0:
            return
        if limit is None:
            limit = self.config.actions.get(action)
        if limit is None:
            return
        now = self.clock()
        tokens, updated = self._buckets.get((action, key), (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - updated) * limit.per_second)
        if tokens < cost:
            wait_ms = int((cost - tokens) / limit.per_second * 1000) + 1
            self._buckets[(action, key)] = (tokens, now)
            raise limit_exceeded(wait_ms)
        self._buckets[(action, key)] = (tokens - cost, now)
        self._ops += 1
        if self._ops % 1024 == 0:
            self._sweep(now)

    def check_user(self, action: str, user_id: str, *, cost: float = 1.0) -> None:
        """Charge a user's request to `action`, unless the user is exempt (bots)."""
        self.check(action, user_id, exempt=self.exempt(user_id), cost=cost)

    def check_server(self, action: str, origin: str) -> None:
        """Charge an inbound federation request to its origin server's bucket (the
        origin the X-Matrix signature proved, so a peer cannot spend another's)."""
        self.check(action, "server:" + origin)

    def would_allow(self, action: str, key: str) -> bool:
        """Peek without taking a token (used to refuse before expensive work)."""
        try:
            limit = self.config.actions[action]
        except KeyError:
            return True
        if not self.config.enabled:
            return True
        now = self.clock()
        tokens, updated = self._buckets.get((action, key), (float(limit.burst), now))
        return min(float(limit.burst), tokens + (now - updated) * limit.per_second) >= 1.0

    def _sweep(self, now: float) -> None:
        full = []
        for (action, key), (tokens, updated) in self._buckets.items():
            limit = (self._overrides.get(key) if action == "message" else None) or self.config.actions.get(action)
            if limit is None or tokens + (now - updated) * limit.per_second >= limit.burst:
                full.append((action, key))
        for k in full:
            del self._buckets[k]
