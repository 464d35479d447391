"""The outbound federation queue's rows: what to queue, and a destination's next batch."""

from __future__ import annotations

from dataclasses import dataclass

PDU = "pdu"
EDU = "edu"


@dataclass(frozen=True)
class OutboxItem:
    """A row to queue: ``event_id`` for a PDU, ``edu_json`` for an EDU."""

    destination: str
    kind: str
    event_id: str | None = None
    edu_json: str | None = None


@dataclass(frozen=True)
class OutboxBatch:
    """The oldest queued items of one destination: (seq, event_id) and (seq, edu_json)."""

    pdus: list[tuple[int, str]]
    edus: list[tuple[int, str]]

    @property
    def seqs(self) -> list[int]:
        return [s for s, _ in self.pdus] + [s for s, _ in self.edus]
