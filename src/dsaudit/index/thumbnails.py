"""Report thumbnails: small JPEG data URIs of the images a report shows, read from the dataset
(local or remote, read-only) on all cores, under a byte budget. Which images, and in what order,
is the renderer's choice (render/gallery.thumbnail_order); this module only makes them."""

from __future__ import annotations

import base64
from io import BytesIO

from dsaudit.index.dataset import DatasetIndex
from dsaudit.index.engine import run_parallel

THUMB_SIDE = 96   # pixels of a thumbnail's longer side


def thumbnail_uri(abs_path: str) -> str:
    """A small JPEG data URI of one image, or "" when it cannot be made. Only rows that decoded are
    passed here, so decompression bombs (never decoded) never reach it."""
    try:
        from PIL import Image

        from dsaudit.index import io as dsio  # remote URLs (s3://...) read through fsspec

        with dsio.open_binary(abs_path) as fh, Image.open(fh) as img:
            img.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
            img = img.convert("RGB")
            buf = BytesIO()
            img.save(buf, format="JPEG", quality=70)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except Exception:
        return ""


def make_thumbnails(index: DatasetIndex, order: list[str], limit: int, jobs: int,
                    max_bytes: int = 8_000_000) -> dict[str, str]:
    """Thumbnails for the readable paths of `order`, in that order, until `max_bytes` of data URIs
    (the budget that binds: a 32-px image costs a tenth of a large photo) or `limit` images; made
    in chunks, so the work stops where the budget does."""
    if limit <= 0 or max_bytes <= 0:
        return {}
    t = index.table
    readable = t[t["readable"]].set_index("path")["abs_path"]
    paths = [p for p in order if p in readable.index][:limit]
    out: dict[str, str] = {}
    used = 0
    chunk = max(64, 32 * max(1, jobs))
    for start in range(0, len(paths), chunk):
        part = paths[start:start + chunk]
        for p, uri in zip(part, run_parallel(thumbnail_uri, [readable[p] for p in part], jobs)):
            if uri and used + len(uri) <= max_bytes:
                out[p] = uri
                used += len(uri)
        if used >= max_bytes * 0.98:
            break
    return out
