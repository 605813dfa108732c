"""Integrity checks (DSA0xx): each with a dataset that has the problem and one that does not."""

import dataclasses
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

from dsaudit.config import AuditConfig, IntegrityConfig
from dsaudit.pipeline import scan
from imagery import make_split_dataset, real_patches, write_image

CFG = AuditConfig(jobs=1, select=("DSA0*",))


def ids(result, check_id=None):
    found = [f for f in result.findings if check_id is None or f.check_id == check_id]
    return found


@pytest.fixture
def clean(tmp_path):
    root = tmp_path / "clean"
    make_split_dataset(root, {"train": {"cat": 4, "dog": 4}, "val": {"cat": 2, "dog": 2}}, size=32)
    return root


def test_clean_dataset_has_no_integrity_findings(clean):
    result = scan(clean, CFG)
    assert result.findings == []
    assert result.summary["images"] == 12
    assert result.gate["passed"] and result.gate["exit_code"] == 0


def _png_with_bad_pixels(path: Path) -> None:
    write_image(path, real_patches(1, 32, seed=3)[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 12] = b"\xde\xad\xbe\xef" * 3
    path.write_bytes(bytes(data))


def test_corrupt_truncated_empty_and_non_image_files(clean):
    _png_with_bad_pixels(clean / "train" / "cat" / "corrupt.png")
    jpg = write_image(clean / "train" / "dog" / "cut.jpg", real_patches(1, 64, seed=4)[0])
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    (clean / "val" / "cat" / "empty.png").write_bytes(b"")
    (clean / "val" / "dog" / "notes.csv").write_text("a,b\n1,2\n")
    result = scan(clean, CFG)
    got = {(f.check_id, f.paths) for f in result.findings}
    assert got == {("DSA001", ("train/cat/corrupt.png",)), ("DSA002", ("train/dog/cut.jpg",)),
                   ("DSA003", ("val/cat/empty.png",)), ("DSA004", ("val/dog/notes.csv",))}
    assert result.gate["exit_code"] == 1
    assert result.summary["images"] == 12  # the broken files are not counted as images


def test_jpeg_without_end_marker_is_truncated_even_if_pillow_decodes_it(clean):
    jpg = write_image(clean / "train" / "dog" / "noeoi.jpg", real_patches(1, 64, seed=5)[0])
    data = jpg.read_bytes()
    jpg.write_bytes(data[:-2])  # drop only the FFD9 end-of-image marker
    result = scan(clean, CFG)
    assert [(f.check_id, f.paths) for f in result.findings] == [("DSA002", ("train/dog/noeoi.jpg",))]


def test_jpeg_with_trailing_bytes_is_not_truncated(clean):
    jpg = write_image(clean / "train" / "dog" / "trailer.jpg", real_patches(1, 64, seed=5)[0])
    jpg.write_bytes(jpg.read_bytes() + b"\x00" * 100 + b"camera-metadata")
    assert scan(clean, CFG).findings == []


def test_motion_photo_jpeg_with_a_long_trailer_is_not_truncated(clean):
    """A JPEG followed by more bytes than its own size (a phone's "motion photo": the video is
    appended after the end-of-image marker) decodes fully and is not broken."""
    jpg = write_image(clean / "train" / "dog" / "motion.jpg", real_patches(1, 64, seed=6)[0])
    video = b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(50_000)
    jpg.write_bytes(jpg.read_bytes() + video)
    assert scan(clean, CFG).findings == []


def test_cut_jpeg_with_an_embedded_thumbnail_is_still_truncated(clean):
    """The end-of-image marker of an EXIF thumbnail (a whole JPEG inside APP1) does not make a cut
    main image look complete."""
    import io as _io

    thumb = _io.BytesIO()
    Image.fromarray(real_patches(1, 32, seed=8)[0]).save(thumb, "JPEG")
    payload = b"Exif\x00\x00" + thumb.getvalue()
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    jpg = write_image(clean / "train" / "dog" / "cut_exif.jpg", real_patches(1, 128, seed=9)[0])
    data = jpg.read_bytes()
    whole = data[:2] + app1 + data[2:]
    jpg.write_bytes(whole[: len(whole) - (len(data) - 2) // 3])   # cut inside the main image's scan
    assert [(f.check_id, f.paths) for f in scan(clean, CFG).findings] == [("DSA002", ("train/dog/cut_exif.jpg",))]


def test_extension_mismatch_groups_files_by_extension_and_format(clean):
    for i in range(3):
        write_image(clean / "train" / "cat" / f"fake_{i}.jpg", real_patches(1, 32, seed=10 + i)[0], fmt="PNG")
    write_image(clean / "val" / "dog" / "real.jpeg", real_patches(1, 32, seed=20)[0])
    (finding,) = ids(scan(clean, CFG), "DSA005")
    assert finding.evidence["count"] == 3 and finding.evidence["format"] == "PNG"
    assert finding.paths == tuple(f"train/cat/fake_{i}.jpg" for i in range(3))


def test_mixed_colour_modes_lists_the_minority(clean):
    write_image(clean / "train" / "cat" / "grey.png", real_patches(1, 32, seed=30)[0], mode="L")
    write_image(clean / "train" / "dog" / "alpha.png", real_patches(1, 32, seed=31)[0], mode="RGBA")
    (finding,) = ids(scan(clean, CFG), "DSA006")
    assert finding.evidence["modes"] == {"RGB": 12, "L": 1, "RGBA": 1}
    assert set(finding.paths) == {"train/cat/grey.png", "train/dog/alpha.png"}


def test_tiny_and_extreme_aspect_images(clean):
    write_image(clean / "train" / "cat" / "icon.png", np.full((8, 8, 3), 120, np.uint8))
    write_image(clean / "train" / "dog" / "strip.png", np.full((20, 400, 3), 90, np.uint8))
    result = scan(clean, CFG)
    assert ids(result, "DSA007")[0].paths == ("train/cat/icon.png",)
    assert ids(result, "DSA008")[0].paths == ("train/dog/strip.png",)
    relaxed = dataclasses.replace(CFG, integrity=IntegrityConfig(min_side=4, max_aspect_ratio=50))
    assert not [f for f in scan(clean, relaxed).findings if f.check_id in ("DSA007", "DSA008")]


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims width x height: a decompression bomb that is never decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def test_decompression_bomb_is_reported_without_decoding(clean):
    _png_header_only(clean / "train" / "cat" / "bomb.png", 50_000, 50_000)
    result = scan(clean, CFG)
    (finding,) = ids(result, "DSA009")
    assert finding.evidence["pixels"] == 2_500_000_000
    assert finding.paths == ("train/cat/bomb.png",)


def test_empty_class_and_class_missing_from_split(tmp_path):
    make_split_dataset(tmp_path, {"train": {"cat": 3, "dog": 3}, "val": {"cat": 2, "dog": 1, "bird": 1}},
                       size=32)
    (tmp_path / "train" / "fish").mkdir()
    result = scan(tmp_path, CFG)
    empty = ids(result, "DSA010")
    assert [f.evidence["class"] for f in empty] == ["fish"]
    missing = {f.evidence["class"]: (str(f.severity), f.evidence["missing_from"]) for f in ids(result, "DSA011")}
    assert missing == {"bird": ("error", ["train"]), "fish": ("warning", ["val"])}


def test_class_name_variants_across_splits(tmp_path):
    make_split_dataset(tmp_path, {"train": {"Cat": 2, "dog": 2}, "val": {"cat": 1, "dog ": 1}}, size=32)
    variants = ids(scan(tmp_path, CFG), "DSA012")
    assert sorted(sorted(f.evidence["variants"]) for f in variants) == [["Cat", "cat"], ["dog", "dog "]]


def test_hidden_files_symlinks_and_unexpected_entries(clean):
    (clean / "train" / "cat" / ".DS_Store").write_bytes(b"x")
    os.symlink(clean / "train", clean / "train" / "cat" / "loop")
    (clean / "notes.txt").write_text("x")
    write_image(clean / "lost.png", real_patches(1, 32, seed=41)[0])
    write_image(clean / "scratch" / "bird" / "x.png", real_patches(1, 32, seed=40)[0])
    result = scan(clean, CFG)
    assert ids(result, "DSA013")[0].paths == ("train/cat/.DS_Store",)
    assert str(ids(result, "DSA013")[0].severity) == "info"
    assert ids(result, "DSA014")[0].evidence["kind"] == "symlink_loop"
    unexpected = {f.subject: (f.paths, str(f.severity)) for f in ids(result, "DSA015")}
    assert unexpected == {"unknown_folder": (("scratch",), "warning"), "stray_file": (("lost.png",), "warning"),
                          "stray_file_other": (("notes.txt",), "info")}


def test_manifest_missing_files_are_errors(tmp_path):
    write_image(tmp_path / "a.png", real_patches(1, 32)[0])
    (tmp_path / "m.csv").write_text("path,label\na.png,cat\ngone.png,dog\n")
    (finding,) = ids(scan(None, CFG, tmp_path / "m.csv"), "DSA016")
    assert finding.paths == ("gone.png",) and str(finding.severity) == "error"


def test_permission_denied_file_is_a_finding_not_a_crash(clean, monkeypatch):
    """Simulated, because tests may run as root (which reads anything)."""
    from dsaudit.index import io

    real = io.read_bytes

    def deny(path):
        if path.endswith("img_000.png") and "/val/cat/" in path:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(io, "read_bytes", deny)
    (finding,) = scan(clean, dataclasses.replace(CFG, cache=False)).findings
    assert finding.check_id == "DSA001" and "Permission denied" in finding.message


def test_multiprocess_index_matches_single_process(clean):
    _png_with_bad_pixels(clean / "train" / "cat" / "corrupt.png")
    one = scan(clean, dataclasses.replace(CFG, cache=False))
    two = scan(clean, dataclasses.replace(CFG, cache=False, jobs=2))
    assert [f.to_dict() for f in one.findings] == [f.to_dict() for f in two.findings]
    assert one.meta["fingerprint"] == two.meta["fingerprint"]


def test_float_images_with_nan_pixels_keep_their_content_and_all_nan_is_broken(tmp_path):
    """One NaN pixel must not turn a float TIFF into a constant thumbnail (two unrelated ones then
    matched as duplicates); an image with no finite value at all is broken."""
    make_split_dataset(tmp_path, {"train": {"a": 4}, "val": {"a": 4}}, size=48, seed=3)
    for i, split in enumerate(("train", "val")):
        x = np.asarray(Image.fromarray(real_patches(1, 64, seed=40 + i)[0]).convert("L"), np.float32) / 255
        x[10, 10] = np.nan
        Image.fromarray(x, mode="F").save(tmp_path / split / "a" / f"float_nan_{i}.tif")
    Image.fromarray(np.full((32, 32), np.nan, np.float32), mode="F").save(tmp_path / "val" / "a" / "all_nan.tif")
    result = scan(tmp_path, dataclasses.replace(CFG, select=("DSA0*", "DSA2*")))
    assert not [f for f in result.findings if f.check_id.startswith("DSA2")]
    assert [(f.check_id, f.paths) for f in result.findings if f.check_id == "DSA001"] == [
        ("DSA001", ("val/a/all_nan.tif",))]
