"""Time, injected so tests can move it (token expiry, UIA session expiry)."""

from __future__ import annotations

import time


class Clock:
    def time_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()
