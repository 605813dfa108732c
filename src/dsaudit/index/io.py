"""File access for the index pass: local paths by default; remote URLs (s3://, gs://, ...) through
fsspec when installed. Every read of a dataset file goes through here, read-only.

A file's version stamp is what the cache keys on: mtime in nanoseconds for local files; for remote
objects a stable integer derived from the ETag (or the modification time when there is no ETag).
"""

from __future__ import annotations

import os


def is_remote(path: str) -> bool:
    """True for URLs such as s3://bucket/key; plain paths and file:// are local."""
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def stat(path: str) -> tuple[int, int]:
    """(size in bytes, version stamp) of a file; raises OSError when it cannot be read."""
    if is_remote(path):
        from dsaudit.index import remote

        return remote.stat(path)
    st = os.stat(local_path(path))
    return st.st_size, st.st_mtime_ns


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        from dsaudit.index import remote

        return remote.read_bytes(path)
    with open(local_path(path), "rb") as fh:
        return fh.read()


def open_binary(path: str):
    """A binary file object (for files too large to read whole)."""
    if is_remote(path):
        from dsaudit.index import remote

        return remote.open_binary(path)
    return open(local_path(path), "rb")
