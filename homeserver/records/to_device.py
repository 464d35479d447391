"""Records of to-device messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToDeviceMessage:
    """One message waiting in a recipient device's inbox."""

    stream_id: int
    sender: str
    type: str
    content: dict[str, Any]
