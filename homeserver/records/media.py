"""One file of the media repository (local upload or cached remote media)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaInfo:
    """A media file's metadata.

    ``origin`` is the server name of the mxc:// URI (ours for local uploads);
    ``size``/``sha256`` are None while an async upload has no content yet
    (``pending``); ``created_ts`` is the upload time (for remote media: when the
    cache was filled); ``quarantined_by`` is the admin who quarantined it, if any."""

    origin: str
    media_id: str
    is_local: bool
    content_type: str | None
    filename: str | None
    size: int | None
    sha256: str | None
    uploader: str | None
    created_ts: int
    unused_expires_at: int | None = None
    quarantined_by: str | None = None
    last_access_ts: int | None = None

    @property
    def mxc(self) -> str:
        return f"mxc://{self.origin}/{self.media_id}"

    @property
    def pending(self) -> bool:
        return self.size is None

    @property
    def quarantined(self) -> bool:
        return self.quarantined_by is not None


@dataclass(frozen=True)
class ThumbnailInfo:
    width: int
    height: int
    method: str
    animated: bool
    content_type: str
    size: int
