"""The console's figures: a federation destination's delivery state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class DestinationRecord:
    """A destination as the sender saw it: the last delivery, the failure streak under
    way (`failure_ts` its start, `retry_interval_ms` the current backoff), and how many
    requests our federation policy refused to or from it."""

    destination: str
    last_success_ts: int | None = None
    failure_ts: int | None = None
    retry_last_ts: int | None = None
    retry_interval_ms: int = 0
    failures: int = 0
    last_error: str | None = None
    refusals: int = 0
    last_refusal_ts: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Synapse's destination fields first (its admin API's shape), then ours."""
        return {
            "destination": self.destination,
            "retry_last_ts": self.retry_last_ts or 0,
            "retry_interval": self.retry_interval_ms,
            "failure_ts": self.failure_ts,
            "last_successful_stream_ordering": None,
            "last_success_ts": self.last_success_ts,
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
            "refusals": self.refusals,
            "last_refusal_ts": self.last_refusal_ts,
        }
