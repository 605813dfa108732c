"""Objects on object storage (s3://, gs://, az://, ... ) through fsspec, read-only: stat, read and
open one object, prefetch a batch, and the version stamps the record cache keys on.

Version stamps: the record cache keys on (relative path, size, stamp). For an object the stamp is a
stable 63-bit integer derived from its ETag (or generation / version id / modification time when the
store gives no ETag), so an overwritten object is decoded again and an unchanged one never is.
The listing (index/remote.py) already carries size and ETag, so stat() of a listed object costs no
request.

Credentials come from each store's usual environment and configuration (AWS_* variables and
~/.aws for s3fs, GOOGLE_APPLICATION_CREDENTIALS for gcsfs, AZURE_STORAGE_* for adlfs) and from
fsspec's own configuration (FSSPEC_S3_ENDPOINT_URL and similar, or ~/.config/fsspec). dsaudit
never reads, prints or stores them; error messages are the store's, minus nothing we added.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io as _io
import threading
from typing import Any

from dsaudit.index.errors import DatasetError

# Which pip extra provides each protocol, for a clear message when it is missing.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure",
          "abfss": "azure", "adl": "azure"}

_lock = threading.Lock()
_known: dict[str, tuple[int, int]] = {}   # URL -> (size, stamp) from the latest listing
_KNOWN_MAX = 5_000_000                     # bound the memo (~1 GB at this size); cleared when full


# --------------------------------------------------------------------------------------------- fs

def _split_url(url: str) -> tuple[str, str]:
    protocol, _, rest = url.partition("://")
    return protocol.lower(), rest


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for a URL; DatasetError when the backend is missing."""
    protocol, _ = _split_url(url)
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        extra = EXTRAS.get(protocol, "s3")
        raise DatasetError(f"reading {protocol}:// needs fsspec: pip install 'dsaudit[{extra}]'") from None
    try:
        fs, path = url_to_fs(url)
    except (ImportError, ValueError) as exc:
        extra = EXTRAS.get(protocol)
        hint = f"pip install 'dsaudit[{extra}]'" if extra else "install the fsspec backend for it"
        raise DatasetError(f"cannot open {protocol}:// URLs ({_short(exc)}): {hint}") from None
    return fs, path.rstrip("/")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _as_oserror(exc: BaseException, url: str) -> OSError:
    if isinstance(exc, OSError):
        return exc
    err = OSError(f"{type(exc).__name__}: {_short(exc)}")
    err.strerror = f"{type(exc).__name__}: {_short(exc)}"
    return err


def version_stamp(info: dict[str, Any]) -> int:
    """A stable integer identifying one version of an object (fits SQLite's and pandas' int64)."""
    for key in ("ETag", "etag", "md5Hash", "generation", "VersionId", "version_id"):
        value = info.get(key)
        if value not in (None, ""):
            token = f"{key.lower()}:{str(value).strip(chr(34))}"
            return int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big") >> 1
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(key)
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return int(value.timestamp() * 1_000_000) * 1000
        if isinstance(value, (int, float)) and value:
            return int(float(value) * 1e9)
        if isinstance(value, str) and value:
            try:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                return int(parsed.timestamp() * 1_000_000) * 1000
            except ValueError:
                return int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big") >> 1
    return 0


def _remember(url: str, size: int, stamp: int) -> None:
    with _lock:
        if len(_known) >= _KNOWN_MAX:
            _known.clear()
        _known[url] = (size, stamp)


def stat(url: str) -> tuple[int, int]:
    """(size, version stamp) of an object; raises OSError when it cannot be read."""
    with _lock:
        hit = _known.get(url)
    if hit is not None:
        return hit
    fs, path = filesystem(url)
    try:
        info = fs.info(path)
    except Exception as exc:  # noqa: BLE001 - every store failure is "cannot read"
        raise _as_oserror(exc, url) from None
    if info.get("type") == "directory":
        raise IsADirectoryError(21, "is a folder", url)
    size, stamp = int(info.get("size") or 0), version_stamp(info)
    _remember(url, size, stamp)
    return size, stamp


def known(urls) -> dict[str, tuple[int, int]]:
    """(size, stamp) of the given URLs that the latest listing saw (no request)."""
    with _lock:
        return {u: _known[u] for u in urls if u in _known}


def seed(stats: dict[str, tuple[int, int]]) -> None:
    """Teach this process (a Dask worker) the listing's sizes and stamps: stat() then needs no HEAD."""
    for url, (size, stamp) in stats.items():
        _remember(url, int(size), int(stamp))


_prefetched: dict[str, bytes] = {}
PREFETCH_MAX_OBJECT = 16 << 20          # larger objects are read when needed, not prefetched


def prefetch(urls: list[str]) -> int:
    """Fetch many objects concurrently (one async gather per store) for read_bytes to take.

    Object stores answer each GET after tens of milliseconds; fetched one by one, a worker would wait
    far longer than it decodes. Failures are left for read_bytes to meet (and report) itself.
    Returns the number of objects fetched."""
    by_fs: dict[int, tuple[Any, list[str], list[str]]] = {}
    for url in urls:
        try:
            fs, path = filesystem(url)
        except DatasetError:
            continue
        group = by_fs.setdefault(id(fs), (fs, [], []))
        group[1].append(url)
        group[2].append(path)
    got = 0
    for fs, group_urls, paths in by_fs.values():
        try:
            blobs = fs.cat_ranges(paths, None, None, on_error="return")
        except Exception:  # noqa: BLE001 - prefetching is only an optimisation
            continue
        for url, blob in zip(group_urls, blobs):
            if isinstance(blob, bytes):
                _prefetched[url] = blob
                got += 1
    return got


def drop_prefetched(urls) -> None:
    for url in urls:
        _prefetched.pop(url, None)


PREFETCH_WINDOW = 64 << 20           # bytes of objects fetched ahead at once


def url_of(item: Any) -> str:
    """The path of a per-file task shaped (path, ...) as build.py makes them; "" otherwise."""
    if isinstance(item, tuple) and item and isinstance(item[0], str):
        return item[0]
    return ""


def run_batch(func, items, stats: dict[str, tuple[int, int]] | None = None) -> list[Any]:
    """Apply func to a batch of per-file tasks whose paths are remote URLs, fetching the objects
    concurrently in windows of PREFETCH_WINDOW bytes first (a worker then decodes instead of waiting
    for one GET after another). `stats`: the listing's (size, stamp) per URL, shipped to a worker
    that did not list (a Dask worker); a forked process has them already."""
    urls_all = [url_of(item) for item in items]
    if stats:
        seed(stats)
    else:
        stats = known(u for u in urls_all if u)
    out: list[Any] = []
    start = 0
    while start < len(items):
        end, total = start, 0
        while end < len(items) and (end == start or total < PREFETCH_WINDOW):
            size = stats.get(urls_all[end], (0, 0))[0]
            total += size if size <= PREFETCH_MAX_OBJECT else 0
            end += 1
        urls = [u for u in urls_all[start:end] if u in stats and 0 < stats[u][0] <= PREFETCH_MAX_OBJECT]
        prefetch(urls)
        try:
            out.extend(func(item) for item in items[start:end])
        finally:
            drop_prefetched(urls)
        start = end
    return out


def read_bytes(url: str) -> bytes:
    data = _prefetched.pop(url, None)
    if data is not None:
        return data
    fs, path = filesystem(url)
    try:
        return fs.cat_file(path)
    except Exception as exc:  # noqa: BLE001
        raise _as_oserror(exc, url) from None


class _Reader(_io.RawIOBase):
    """A file object whose errors are OSError, like a local file's."""

    def __init__(self, fh, url: str):
        self._fh, self._url = fh, url

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._fh.read(size)
        except Exception as exc:  # noqa: BLE001
            raise _as_oserror(exc, self._url) from None

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            super().close()


def open_binary(url: str):
    fs, path = filesystem(url)
    try:
        return _Reader(fs.open(path, "rb"), url)
    except Exception as exc:  # noqa: BLE001
        raise _as_oserror(exc, url) from None
