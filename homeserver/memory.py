"""Giving freed memory back to the operating system.

CPython frees small objects into its own arenas, which go back to the system once
empty; everything larger (big lists and dicts of a response being built, the
response body, SQLite's pages) comes from glibc's malloc, which keeps freed
space in its heap. After a big response (an initial sync of a large account
builds and frees tens of megabytes) that space stays resident: the peak becomes
the resident size. `HeapTrimmer` asks malloc to return it (``malloc_trim``,
about a millisecond) after such responses, at most once per interval. Response
bodies of a megabyte or more are allocated with ``mmap`` (`tune_malloc`), so
their pages go back as soon as they are freed instead of growing the heap.

Both are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers, from glibc's malloc.h
_M_ARENA_MAX = -8
# Allocations from this size on are mapped on their own and unmapped when freed. glibc
# otherwise raises its threshold to the largest block freed so far (up to 32 MB), after
# which a big response body is carved from the heap and its pages stay resident.
MMAP_THRESHOLD = 1 << 20


def _libc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - glibc has it (musl and others may not)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc(*, arena_max: int | None) -> None:
    """Set glibc's malloc for a long-running server, before any thread starts:
    `arena_max` arenas (None: glibc's default) and a fixed mmap threshold."""
    libc = _libc()
    if libc is None:
        return
    if arena_max is not None:
        libc.mallopt(_M_ARENA_MAX, arena_max)
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim_heap() -> None:
    """Give malloc's free heap pages back to the system now (a no-op without glibc).

    Called once start-up is over: importing some three hundred modules, compiling
    the dataclasses' generated methods and running the migrations allocate and free
    more than a megabyte that would otherwise stay resident for the process's life."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class HeapTrimmer:
    """Returns malloc's free heap pages to the system after big responses."""

    def __init__(
        self, *, min_bytes: int = 256 * 1024, interval_s: float = 0.1,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_bytes = min_bytes
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._libc = _libc()
        self._last = float("-inf")
        self.trims = 0
        self.trim_seconds = 0.0

    @property
    def available(self) -> bool:
        return self._libc is not None

    def after_response(self, body_bytes: int | None) -> None:
        """Called once a handler has returned (what it built is freed by then)."""
        if self._libc is None or body_bytes is None or body_bytes < self.min_bytes:
            return
        now = self._monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        started = time.perf_counter()
        self._libc.malloc_trim(0)
        self.trims += 1
        self.trim_seconds += time.perf_counter() - started
