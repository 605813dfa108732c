"""One record per file, from one read and at most one decode.

`analyse_file` runs in worker processes. It never raises: an unreadable, empty, truncated, corrupt
or oversized file becomes a record that says so, and the integrity checks turn that into findings.
The pixels are decoded once and handed to the feature extractor (hashing.extract) in the same pass.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
from io import BytesIO
from typing import Any

from PIL import Image, ImageFile

from dsaudit.index import hashing, io

# We enforce our own pixel limit (integrity.max_pixels) from the header, before decoding.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

RECORD_VERSION = "1"
IMAGE_EXTENSIONS = {"jpg", "jpeg", "jpe", "jfif", "png", "bmp", "gif", "tif", "tiff", "webp", "ppm",
                    "pgm", "pbm", "pnm", "ico", "dib", "tga", "jp2", "j2k", "heic", "heif", "avif",
                    "dcm", "psd", "pcx", "sgi", "ras", "im", "xbm", "qoi"}
# Extension -> the set of real formats it may legitimately hold.
EXTENSION_FORMATS = {
    "jpg": {"JPEG", "MPO"}, "jpeg": {"JPEG", "MPO"}, "jpe": {"JPEG"}, "jfif": {"JPEG"},
    "png": {"PNG"}, "bmp": {"BMP", "DIB"}, "dib": {"BMP", "DIB"}, "gif": {"GIF"},
    "tif": {"TIFF"}, "tiff": {"TIFF"}, "webp": {"WEBP"}, "ico": {"ICO"},
    "ppm": {"PPM"}, "pgm": {"PPM"}, "pbm": {"PPM"}, "pnm": {"PPM"},
}
READ_LIMIT = 512 * 1024 * 1024  # files above this are hashed in chunks and decoded from disk

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "GZIP"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
    (b"qoif", "QOI"),
)


def sniff_format(head: bytes) -> str:
    """The real format from the first bytes, independent of the file's extension."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "HEIF"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "MP4"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"):
        return "PPM"
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head[:64]):
        return "TEXT"
    return ""


def _jpeg_scan_start(data: bytes) -> int:
    """Offset of the first start-of-scan (SOS) marker of the main image, found by walking the
    marker segments by their lengths (so a thumbnail embedded in EXIF, a whole JPEG inside APP1,
    is stepped over); -1 when the header is cut short or malformed."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return -1
        marker = data[pos + 1]
        if marker == 0xFF:            # fill bytes before a marker
            pos += 1
            continue
        if marker == 0xDA:
            return pos
        if marker in (0x01, *range(0xD0, 0xD8)):   # markers without a length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return -1


def _stream_incomplete(fmt: str, data: bytes | None) -> bool:
    """True when the stream visibly stops early: a JPEG whose image data has no end-of-image
    marker after its first scan, a PNG without IEND after its image data. Pillow decodes such a
    JPEG without complaint (libjpeg pads the missing rows with grey). Bytes after the end marker
    are fine: camera metadata, padding, the video of a "motion photo"."""
    if data is None or len(data) < 64:
        return False
    if fmt == "JPEG":
        sos = _jpeg_scan_start(data)
        return sos < 0 or data.find(b"\xff\xd9", sos) < 0
    if fmt == "PNG":
        idat = data.find(b"IDAT")
        return data.find(b"IEND", max(idat, 0)) < 0
    return False


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    with io.open_binary(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def analyse_file(task: tuple) -> dict[str, Any]:
    """Read and decode one file. `task` is (abs_path, ext, max_pixels) or (abs_path, ext, max_pixels,
    size): build.py passes the size of the stat it keyed the cache on (a regular file, checked
    there), so the file is stat'ed once per scan; without it the file is stat'ed here. Never raises."""
    abs_path, ext, max_pixels, *known = task
    rec: dict[str, Any] = {
        "kind": "unreadable", "format": "", "width": 0, "height": 0, "mode": "", "channels": 0,
        "readable": False, "truncated": False, "bomb": False, "error": "", "sha256": "",
        "features": None,
    }
    try:
        size = int(known[0]) if known else io.stat(abs_path)[0]
        if size == 0:
            rec["kind"] = "empty"
            rec["error"] = "file is empty (0 bytes)"
            rec["sha256"] = hashlib.sha256(b"").hexdigest()
            return rec
        data: bytes | None = None
        if size <= READ_LIMIT:
            data = io.read_bytes(abs_path)
            rec["sha256"] = hashlib.sha256(data).hexdigest()
            head = data[:160]
        else:
            rec["sha256"] = _hash_file(abs_path)
            with io.open_binary(abs_path) as fh:
                head = fh.read(160)
    except OSError as exc:
        rec["error"] = f"cannot read file: {exc.strerror or exc}"
        return rec

    sniffed = sniff_format(head)
    rec["format"] = sniffed
    looks_like_image = ext in IMAGE_EXTENSIONS or sniffed in {
        "PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "ICO", "PSD", "JPEG2000", "HEIF", "AVIF", "DICOM",
        "PPM", "QOI"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(BytesIO(data) if data is not None else io.open_binary(abs_path))
            with img:
                rec["format"] = img.format or sniffed
                rec["width"], rec["height"] = img.size
                rec["mode"] = img.mode
                rec["channels"] = len(img.getbands())
                if img.size[0] * img.size[1] > max_pixels:
                    rec["kind"] = "image"
                    rec["bomb"] = True
                    rec["error"] = (f"{img.size[0]}x{img.size[1]} = {img.size[0] * img.size[1]:,} pixels "
                                    f"exceeds the limit of {max_pixels:,}; not decoded")
                    return rec
                hashing.prepare(img)
                img.load()
                if _stream_incomplete(rec["format"], data):
                    rec["kind"] = "broken-image"
                    rec["truncated"] = True
                    rec["error"] = "image data ends early (end-of-image marker missing)"
                    return rec
                rec["features"] = hashing.extract_encoded(img)
                rec["kind"] = "image"
                rec["readable"] = True
    except Exception as exc:  # any decoder failure is a finding, never a crash
        # Pillow names the in-memory stream ("<_io.BytesIO object at 0x7f...>"): drop the address so
        # the same file gives the same message on every run.
        message = re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(exc).__name__}: {exc}")
        rec["error"] = message[:300]
        rec["truncated"] = "truncated" in message.lower() or "end of file" in message.lower()
        rec["kind"] = "broken-image" if looks_like_image and sniffed != "TEXT" else "non-image"
        if rec["truncated"]:
            rec["kind"] = "broken-image"
    return rec


def analyse_file_pickled(task: tuple) -> bytes:
    """``analyse_file``'s record pickled in the worker, as the record cache stores it
    (cache.encode_record): the scanning process keeps these bytes for the cache and unpickles each
    once, instead of unpickling the worker's record and pickling it again for the cache."""
    return pickle.dumps(analyse_file(task), protocol=pickle.HIGHEST_PROTOCOL)
