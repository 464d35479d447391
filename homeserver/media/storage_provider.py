"""Where media bytes live: a `StorageProvider` maps a key (a relative path the
repository derives from the media ID only) to a file.

`LocalFilesystemProvider` keeps files under ``<data_dir>/media/``. Writes are atomic:
bytes go to a temporary file in the destination's own directory, which is fsynced and
renamed over the final name (then the directory is fsynced), so a reader sees either
no file or the whole file, never part of one. An object store can implement the same
interface later (serving from a local cache path).
"""

from __future__ import annotations

import abc
import contextlib
import os
import secrets


class PendingFile:
    """A file being written: `write` appends, `commit` makes it visible at its key
    atomically, `abort` removes it. Writes go straight to the OS (64 KiB chunks into
    the page cache); the fsync is done in `commit`, which the caller runs in a thread."""

    def __init__(self, final_path: str) -> None:
        directory = os.path.dirname(final_path)
        os.makedirs(directory, exist_ok=True)
        self.final_path = final_path
        self.temp_path = os.path.join(directory, f".tmp-{secrets.token_hex(8)}")
        self._fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def commit(self) -> None:
        """fsync, rename into place, fsync the directory (blocking: call in a thread)."""
        os.fsync(self._fd)
        os.close(self._fd)
        self.closed = True
        os.replace(self.temp_path, self.final_path)
        _fsync_dir(os.path.dirname(self.final_path))

    def abort(self) -> None:
        if not self.closed:
            os.close(self._fd)
            self.closed = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)


class StorageProvider(abc.ABC):
    """Media bytes by key. Keys are relative paths made by the repository from
    validated media IDs (never from client input as such)."""

    @abc.abstractmethod
    def local_path(self, key: str) -> str:
        """A path on this machine the file can be served from."""

    @abc.abstractmethod
    def begin(self, key: str) -> PendingFile:
        """Start writing the file at ``key`` (blocking only for a mkdir and an open)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove a file (or a directory of thumbnails) if present (blocking)."""


class LocalFilesystemProvider(StorageProvider):
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def local_path(self, key: str) -> str:
        path = os.path.normpath(os.path.join(self.root, key))
        if not path.startswith(self.root + os.sep):  # keys are made safe; this is a backstop
            raise ValueError(f"media key escapes the media directory: {key!r}")
        return path

    def begin(self, key: str) -> PendingFile:
        return PendingFile(self.local_path(key))

    def exists(self, key: str) -> bool:
        return os.path.isfile(self.local_path(key))

    def delete(self, key: str) -> None:
        path = self.local_path(key)
        if os.path.isdir(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
