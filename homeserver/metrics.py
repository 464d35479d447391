"""Process and request metrics in the Prometheus text format.

Labels use route templates, never raw paths, so the number of series stays
bounded however many rooms and users there are.
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homeserver.server import HomeServer


def _page_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


_CACHE_GAUGES = frozenset({"rooms", "entries", "bytes"})  # sizes; every other cache figure counts up


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.request_seconds: dict[tuple[str, str], float] = defaultdict(float)
        # In-memory caches by name: each gives its counters ("hits", "misses", ...)
        # and sizes, rendered as accord_cache_<counter>{cache="<name>"}.
        self.caches: dict[str, Callable[[], dict[str, int]]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.request_seconds[(method, route)] += seconds

    def render(self, hs: HomeServer) -> str:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        lines = [
            "# TYPE accord_http_requests_total counter",
            *(
                f'accord_http_requests_total{{method="{m}",route="{r}",status="{s}"}} {n}'
                for (m, r, s), n in sorted(self.requests.items())
            ),
            "# TYPE accord_http_request_seconds_total counter",
            *(
                f'accord_http_request_seconds_total{{method="{m}",route="{r}"}} {v:.6f}'
                for (m, r), v in sorted(self.request_seconds.items())
            ),
            *self._cache_lines(),
            "# TYPE accord_db_commits_total counter",
            f"accord_db_commits_total {getattr(hs.db, 'commits', 0)}",
            "# TYPE accord_malloc_trims_total counter",
            f"accord_malloc_trims_total {hs.heap_trimmer.trims}",
            "# TYPE accord_malloc_trim_seconds_total counter",
            f"accord_malloc_trim_seconds_total {hs.heap_trimmer.trim_seconds:.6f}",
            "# TYPE process_cpu_seconds_total counter",
            f"process_cpu_seconds_total {usage.ru_utime + usage.ru_stime:.3f}",
            "# TYPE process_resident_memory_bytes gauge",
            f"process_resident_memory_bytes {_page_rss_bytes()}",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {self.started:.3f}",
        ]
        return "\n".join(lines) + "\n"

    def _cache_lines(self) -> list[str]:
        by_metric: dict[str, list[str]] = defaultdict(list)
        for name, stats in sorted(self.caches.items()):
            for counter, value in stats().items():
                metric = f"accord_cache_{counter}" + ("" if counter in _CACHE_GAUGES else "_total")
                by_metric[metric].append(f'{metric}{{cache="{name}"}} {value}')
        lines = []
        for metric, series in sorted(by_metric.items()):
            kind = "counter" if metric.endswith("_total") else "gauge"
            lines += [f"# TYPE {metric} {kind}", *series]
        return lines
