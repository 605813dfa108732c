"""File access for the index pass: local paths by default; remote URLs (s3://, gs://, ...) through
fsspec when installed. Every read of a dataset file goes through here, read-only.

A file's version stamp is what the cache keys on: mtime in nanoseconds for local files; for remote
objects a stable integer derived from the ETag (or the modification time when there is no ETag).

Only regular files are read. The layout walk already skips named pipes and devices, but a manifest
row or a file swapped after the walk can still name one, and opening a FIFO blocks until a writer
comes (forever, in a scan) while /dev/zero never ends: `stat` refuses them, and local files are
opened non-blocking and checked again on the open descriptor.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from typing import NamedTuple


def is_remote(path: str) -> bool:
    """True for URLs such as s3://bucket/key; plain paths and file:// are local."""
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def stat(path: str) -> tuple[int, int]:
    """(size in bytes, version stamp) of a file; raises OSError when it cannot be read."""
    if is_remote(path):
        from dsaudit.index import objects

        return objects.stat(path)
    st = os.stat(local_path(path))
    _require_regular(st.st_mode, path)  # a FIFO or a device has size 0 but is no empty file
    return st.st_size, st.st_mtime_ns


class Stamp(NamedTuple):
    """What the record cache keys a file version on (see index/cache.py for why each part). The
    first two are stat()'s (size, version stamp); remote objects have no inode, ctime or device."""
    size: int
    mtime_ns: int
    inode: int = 0
    ctime_ns: int = 0
    device: int = 0


def stamp(path: str) -> Stamp:
    """The cache key of a file from one stat; raises OSError as stat() does."""
    if is_remote(path):
        return Stamp(*stat(path))
    st = os.stat(local_path(path))
    _require_regular(st.st_mode, path)
    return Stamp(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)


def special_file_type(mode: int) -> str:
    """What a file that is neither a folder nor a regular file is, for messages."""
    for test, what in ((stat_module.S_ISFIFO, "a named pipe (FIFO)"), (stat_module.S_ISCHR, "a character device"),
                       (stat_module.S_ISBLK, "a block device"), (stat_module.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _require_regular(mode: int, path: str) -> None:
    if not stat_module.S_ISREG(mode):
        raise OSError(errno.EINVAL, f"not a regular file but {special_file_type(mode)}", path)


def _open_local(path: str):
    """Open a local file for reading without ever waiting on it: the index stats every file first
    (`stat` refuses what is not a regular file), and one swapped for a FIFO since then opens at once
    (non-blocking) and is refused on the open descriptor."""
    fd = os.open(local_path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        _require_regular(os.fstat(fd).st_mode, path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        from dsaudit.index import objects

        return objects.read_bytes(path)
    with _open_local(path) as fh:
        return fh.read()


def open_binary(path: str):
    """A binary file object (for files too large to read whole)."""
    if is_remote(path):
        from dsaudit.index import objects

        return objects.open_binary(path)
    return _open_local(path)
