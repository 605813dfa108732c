"""Writing reports and baselines without ever replacing something that is not ours to replace.

Reports and baselines are written through symlinks (a shared, linked baseline stays linked), and
atomically (a new file beside the target, renamed over it). A rename replaces whatever the name
points to, so the target is checked first: only a missing path or a regular file the caller may
write is replaced. A FIFO, socket, device or folder is refused, and so is a read-only file. The
permission test reads the mode bits that apply to the caller (owner, group or other) instead of
asking the kernel, because root may rename over a 0444 file and tests, containers and CI jobs often
run as root: a file someone made read-only stays as it was.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


class UnsafeTarget(OSError):
    """The output path names something dsaudit must not replace (exit 2, one line)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    from dsaudit.index.io import special_file_type

    return special_file_type(mode)


def may_write(st: os.stat_result) -> bool:
    """Whether the permission bits that apply to this process allow writing. Root is judged by the
    same bits as the owner class it falls in, so a read-only file stays read-only for root too."""
    uid = os.geteuid() if hasattr(os, "geteuid") else -1
    if uid == st.st_uid:
        return bool(st.st_mode & stat.S_IWUSR)
    groups = set(os.getgroups()) | {os.getegid()} if hasattr(os, "getegid") else set()
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def _shown(path: Path) -> str:
    from dsaudit.index.layout import display_path

    return display_path(str(path))


def check_target(path: Path) -> Path:
    """The real file that writing `path` would replace, after checking that it may be replaced:
    missing, or a regular file whose mode lets the caller write it, in a folder the caller may
    write. Raises UnsafeTarget with a one-line reason otherwise."""
    path = Path(path)
    real = Path(os.path.realpath(path))
    via = f"{_shown(path)} (a link to {_shown(real)})" if real != Path(os.path.abspath(path)) else _shown(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UnsafeTarget(exc.errno, f"cannot check {via}: {exc.strerror or exc}") from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeTarget(0, f"{via} is {_kind(st.st_mode)}, not a regular file; dsaudit replaces only "
                               "regular files: remove it or write somewhere else")
        if not may_write(st) or (hasattr(os, "geteuid") and os.geteuid() != 0 and not os.access(real, os.W_OK)):
            raise UnsafeTarget(0, f"{via} is read-only (mode {stat.S_IMODE(st.st_mode):04o}); dsaudit does not "
                               "replace it: make it writable or write somewhere else")
    folder = real.parent
    try:
        fst = os.stat(folder)
    except OSError:
        return real  # a folder still to be made: mkdir reports what is wrong
    if stat.S_ISDIR(fst.st_mode) and not may_write(fst):
        raise UnsafeTarget(0, f"the folder {_shown(folder)} is read-only (mode {stat.S_IMODE(fst.st_mode):04o}); "
                           f"cannot write {_shown(path)} there")
    return real


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a new file beside `path`, then rename it over `path`: an interrupted or failed
    write (a full disk, a kill) leaves the old file whole, never a truncated report or one that a
    later `scan --baseline` would reject, and a uniquely named temporary file means two scans
    writing to one folder never write into each other's. The new file keeps the old one's
    permissions (else the umask's) and is removed when anything fails. A symlink is written through:
    the regular file it points to is replaced (the temporary file beside it) and the link stays, as a
    plain write would leave it; anything else behind the name is refused (check_target)."""
    real = check_target(path)
    tmp = real.with_name(f".{real.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
        try:
            old = os.stat(real)
        except FileNotFoundError:
            old = None
        if old is not None:
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
        check_target(path)  # again, just before the rename: it may have been swapped meanwhile
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
