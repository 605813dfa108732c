"""End-to-end leakage checks: real PNG/JPEG datasets in tmp_path, scanned by dsaudit.pipeline."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imagery import make_split_dataset, real_patches, write_image
from dsaudit.config import AuditConfig, LeakageConfig
from dsaudit.pipeline import build, scan
from dsaudit.similarity.duplicates import Duplicates

LEAK_IDS = ("DSA201", "DSA202", "DSA203", "DSA204", "DSA205")


def _config(**leak) -> AuditConfig:
    return AuditConfig(jobs=1, cache=False, select=("DSA2*",),
                       leakage=dataclasses.replace(LeakageConfig(), **leak))


def _patches(n: int, seed: int = 0, size: int = 64) -> list[np.ndarray]:
    """Distinct real patches with grey content (a few colour patches are flat in grey)."""
    out = []
    for p in real_patches(3 * n, size=size, seed=seed):
        if np.asarray(Image.fromarray(p).convert("L")).std() > 20:
            out.append(p)
    return out[:n]


def _pairs(result, check_id):
    return {(p["a"], p["b"]) for f in result.findings if f.check_id == check_id
            for p in f.evidence["pairs"]}


TRANSFORMS = {
    "jpeg": lambda im: im,  # written as JPEG quality 60 below
    "resize": lambda im: im.resize((96, 96), Image.Resampling.BICUBIC),
    "brightness": lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.3)).enhance(0.8),
    "hflip": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "vflip": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "crop": lambda im: im.crop((3, 2, 61, 60)),
    "shift": lambda im: Image.fromarray(np.asarray(im)[np.clip(np.arange(64) - 4, 0, 63)]),
}


@pytest.fixture(scope="module")
def leaky(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """train/{a,b} with 10 images each; val holds one transformed copy per transform, plus clean images."""
    root = tmp_path_factory.mktemp("leaky")
    pats = _patches(28, seed=1)
    for i in range(20):
        write_image(root / "train" / ("a" if i < 10 else "b") / f"t{i:02d}.png", pats[i])
    planted = {}
    for k, (name, fn) in enumerate(TRANSFORMS.items()):
        src = f"train/{'a' if k < 10 else 'b'}/t{k:02d}.png"
        img = fn(Image.fromarray(pats[k]))
        dst = f"val/a/{name}.{'jpg' if name == 'jpeg' else 'png'}"
        write_image(root / dst, np.asarray(img), quality=60)
        planted[name] = (src, dst)
    for j in range(20, 28):
        write_image(root / "val" / "b" / f"clean{j}.png", pats[j])
    return root, planted


def test_each_transform_is_found_as_cross_split_near_duplicate(leaky):
    root, planted = leaky
    result = scan(root, _config())
    found = _pairs(result, "DSA202")
    for name, (src, dst) in planted.items():
        assert (src, dst) in found, f"{name} copy not found"
    flagged = {p for f in result.findings for p in f.paths}
    assert not any("clean" in p for p in flagged)
    near = [f for f in result.findings if f.check_id == "DSA202"]
    assert all(f.severity.name == "ERROR" and len(f.paths) >= 2 for f in near)
    pair = near[0].evidence["pairs"][0]
    assert set(pair) == {"a", "b", "split_a", "split_b", "label_a", "label_b", "kind",
                         "distance", "similarity", "transform"}
    transforms = {p["b"]: p["transform"] for f in near for p in f.evidence["pairs"]}
    assert "hflip" in transforms[planted["hflip"][1]]
    assert transforms[planted["rot90"][1]].startswith("rot90")   # PIL ROTATE_90 is counter-clockwise
    section = result.sections["leakage"]
    assert section["cross_split_pairs"] >= len(planted)
    assert section["thresholds"]["verify_threshold"] == LeakageConfig().verify_threshold


def test_the_duplicate_analysis_for_the_probe_and_effective_counts(leaky):
    root, planted = leaky
    index = build(root, _config())
    from dsaudit.analysis import plan
    from dsaudit.checks.registry import select_checks
    from dsaudit.pipeline import run_analyses

    cfg = _config()
    results, failed, _ = run_analyses(plan(select_checks(cfg.select)), index, cfg)
    assert not failed
    dup = results[Duplicates]
    pairs = dup.pairs
    assert list(pairs.columns) == ["a", "b", "kind", "distance", "similarity", "transform",
                                   "cross_split", "same_label"]
    paths = index.table["path"].tolist()
    got = {(paths[a], paths[b]) for a, b in zip(pairs["a"], pairs["b"])}
    assert set(planted.values()) <= got
    assert pairs["cross_split"].all()
    eff = dup.effective
    assert eff[("train", "a")] == {"raw": 10, "effective": 10}


def test_exact_copies_conflicting_labels_and_within_split_clusters(tmp_path):
    pats = _patches(16, seed=2)
    for i in range(12):
        write_image(tmp_path / "train" / ("a" if i < 6 else "b") / f"t{i}.png", pats[i])
    for i in range(12, 16):
        write_image(tmp_path / "val" / "a" / f"v{i}.png", pats[i])
    shutil.copy(tmp_path / "train/a/t0.png", tmp_path / "val/a/copy_t0.png")          # same bytes
    Image.open(tmp_path / "train/a/t1.png").save(tmp_path / "val/a/t1_as.bmp")           # same pixels
    shutil.copy(tmp_path / "train/a/t2.png", tmp_path / "train/b/t2_again.png")          # other class
    for k in range(3):                                                                   # clusters in train/a
        img = Image.open(tmp_path / "train/a/t3.png")
        if k == 1:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img.save(tmp_path / "train" / "a" / f"aug_{k}.jpg", quality=85)
    result = scan(tmp_path, _config(cluster_warn_ratio=0.8))
    by = {cid: [f for f in result.findings if f.check_id == cid] for cid in LEAK_IDS}
    kinds = {p["kind"] for f in by["DSA201"] for p in f.evidence["pairs"]}
    assert kinds == {"bytes", "pixels"} and len(by["DSA201"]) == 2
    assert any("val/a/t1_as.bmp" in f.paths for f in by["DSA201"])
    assert len(by["DSA203"]) == 1
    assert set(by["DSA203"][0].paths) == {"train/a/t2.png", "train/b/t2_again.png"}
    assert by["DSA203"][0].evidence["labels"] == ["a", "b"]
    within = [f for f in by["DSA204"] if f.subject == "split:train"]
    assert len(within) == 1
    assert {"train/a/t3.png", "train/a/aug_0.jpg", "train/a/aug_1.jpg", "train/a/aug_2.jpg"} <= set(within[0].paths)
    counts = within[0].evidence["effective_counts"]["a"]
    assert counts == {"raw": 9, "effective": 6}
    assert within[0].severity.name == "WARNING" and within[0].evidence["low_classes"] == ["a"]
    assert not by["DSA202"] and not by["DSA205"]


def test_group_leakage_from_regex(tmp_path):
    pats = _patches(8, seed=3)
    names = ["train/a/patient01_s1.png", "train/a/patient01_s2.png", "train/b/patient02_s1.png",
             "val/a/patient01_s3.png", "val/b/patient03_s1.png", "val/b/patient03_s2.png",
             "test/a/patient04_s1.png", "test/b/patient02_s5.png"]
    for name, p in zip(names, pats):
        write_image(tmp_path / name, p)
    result = scan(tmp_path, _config(group_regex=r"(patient\d+)_"))
    groups = {f.evidence["group"]: f for f in result.findings if f.check_id == "DSA205"}
    assert set(groups) == {"patient01", "patient02"}
    assert set(groups["patient01"].paths) == {n for n in names if "patient01" in n}
    assert groups["patient02"].evidence["splits"] == {"test": 1, "train": 1}
    assert not [f for f in result.findings if f.check_id != "DSA205"]


def test_clean_dataset_has_no_leakage_findings(tmp_path):
    make_split_dataset(tmp_path, {"train": {"a": 12, "b": 12}, "val": {"a": 6, "b": 6},
                                  "test": {"a": 4, "b": 4}}, size=32, seed=5, ext=".jpg")
    result = scan(tmp_path, _config())
    assert [f for f in result.findings if f.check_id in LEAK_IDS] == []
    assert result.sections["leakage"]["pairs"] == 0
    assert not result.check_errors


def test_unrelated_ct_slices_from_different_papers_do_not_match(covid_ct, tmp_path):
    """Real CT slices look alike; slices of different papers must not be reported as copies."""
    files = sorted(p for p in (covid_ct / "CT_COVID").iterdir() if p.suffix == ".png")
    papers: dict[str, list[Path]] = {}
    for p in files:
        papers.setdefault(p.name.split("-p")[0], []).append(p)
    keys = sorted(papers)[:24]
    for i, key in enumerate(keys):
        split = "train" if i % 2 == 0 else "val"
        for p in papers[key][:3]:
            img = Image.open(p).convert("L")
            img.thumbnail((128, 128))
            img.save(tmp_path / split / "covid" / p.name if (tmp_path / split / "covid").is_dir()
                     else _mk(tmp_path / split / "covid") / p.name)
    result = scan(tmp_path, _config())
    leaks = [f for f in result.findings if f.check_id in ("DSA201", "DSA202")]
    assert leaks == [], [f.paths for f in leaks]


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def test_jpeg_copy_of_small_low_contrast_image_is_found(tmp_path):
    """A 32x32 low-contrast patch re-encoded as JPEG (q 60-65): its band-pass detail is mostly
    compression noise (detail similarity ~0.7-0.8), its pHash moves by >= 12 bits, yet its pixels
    stay within about a grey level. Unrelated low-contrast patches in val stay clean."""
    pats = real_patches(12, size=32, seed=0)
    grey = [np.asarray(Image.fromarray(p).convert("L"), float).std() for p in pats]
    assert 5 < grey[1] < 10 and 5 < grey[3] < 10 and grey[5] < 5 and grey[7] < 5
    train = [0, 1, 2, 3, 4, 6, 8, 9, 10, 11]
    for i in train:
        write_image(tmp_path / "train" / ("a" if i % 2 else "b") / f"t{i:02d}.png", pats[i])
    write_image(tmp_path / "val" / "a" / "copy1.jpg", pats[1], quality=60)
    write_image(tmp_path / "val" / "a" / "copy3.jpg", pats[3], quality=65)
    for i in (5, 7):  # unrelated, low contrast
        write_image(tmp_path / "val" / "b" / f"clean{i}.png", pats[i])
    result = scan(tmp_path, _config())
    pairs = _pairs(result, "DSA202")
    assert {frozenset(p) for p in pairs} == {frozenset(("train/a/t01.png", "val/a/copy1.jpg")),
                                             frozenset(("train/a/t03.png", "val/a/copy3.jpg"))}
    flagged = {p for f in result.findings if f.check_id in LEAK_IDS for p in f.paths}
    assert not {"val/b/clean5.png", "val/b/clean7.png"} & flagged


def test_keras_style_augmented_copies_inside_a_pool_are_clustered(tmp_path):
    """The melanoma case: augmented copies (shift, small rotation, zoom crop) written into the
    class folders beside their originals. Global hashes miss these; the k-NN stage inside the pool
    (knn_within) finds them: DSA204 clusters for same-class copies, DSA203 for a copy filed under
    the other class. The same pool without the copies has no leakage finding at all."""
    pats = _patches(24, seed=6)
    for i in range(24):
        write_image(tmp_path / ("mel" if i < 12 else "nev") / f"img{i:02d}.png", pats[i])
    clean = scan(tmp_path, _config())
    assert not [f for f in clean.findings if f.check_id in LEAK_IDS], [f.title for f in clean.findings]

    def shifted(im):
        arr = np.asarray(im)
        # 5% down, 3% left, edge-filled (Keras fill_mode="nearest"). Larger edge-filled shifts of
        # small images sit near the threshold (docs/leakage.md, limits)
        return Image.fromarray(arr[np.clip(np.arange(64) - 3, 0, 63)][:, np.clip(np.arange(64) + 2, 0, 63)])

    augment = {
        "shift": shifted,
        "rotate": lambda im: im.rotate(7, resample=Image.Resampling.BILINEAR),
        "zoom": lambda im: im.crop((5, 4, 59, 60)).resize((64, 64), Image.Resampling.BILINEAR),
    }
    for k, (name, fn) in enumerate(augment.items()):
        src = Image.open(tmp_path / "mel" / f"img{k:02d}.png")
        fn(src).save(tmp_path / "mel" / f"aug_{name}_{k}.png")
    Image.open(tmp_path / "nev" / "img12.png").rotate(-4, resample=Image.Resampling.BILINEAR).save(
        tmp_path / "mel" / "aug_other_class.png")
    result = scan(tmp_path, _config(cluster_warn_ratio=0.95))
    by = {cid: [f for f in result.findings if f.check_id == cid] for cid in LEAK_IDS}
    within = [set(f.paths) for f in by["DSA204"]]
    assert within, [f.title for f in result.findings]
    found = set().union(*within)
    for k, name in enumerate(augment):
        assert {f"mel/img{k:02d}.png", f"mel/aug_{name}_{k}.png"} <= found, (name, within)
    assert len(by["DSA203"]) == 1
    assert set(by["DSA203"][0].paths) == {"nev/img12.png", "mel/aug_other_class.png"}
    assert not by["DSA201"] and not by["DSA202"]

    off = scan(tmp_path, _config(knn_within=0))      # without the stage: hashes alone miss them
    assert not [f for f in off.findings if f.check_id == "DSA203"]


def test_covid_ct_pool_reports_its_real_cross_label_duplicates(covid_ct):
    """COVID-CT holds two slices under both labels, from one figure published twice:
    CT_NonCOVID/71%1.jpg is a zoomed, re-windowed copy of CT_COVID/kjr-21-e24-p5-31.png (same
    arrows), found only by the k-NN search inside the pool (the pHash moved too far); 71%0.jpg is
    kjr-21-e24-p5-29.png cut to another aspect (677x485 vs 369x237) with the arrows moved, found
    only through the one-axis squeeze and fit. This pins those real findings, and nothing else."""
    result = scan(covid_ct, _config())
    conflicts = [set(f.paths) for f in result.findings if f.check_id == "DSA203"]
    assert {"CT_COVID/kjr-21-e24-p5-31.png", "CT_NonCOVID/71%1.jpg"} in conflicts, conflicts
    assert {"CT_COVID/kjr-21-e24-p5-29.png", "CT_NonCOVID/71%0.jpg"} in conflicts, conflicts
    assert len(conflicts) == 2, conflicts


def test_split_too_large_for_the_within_search_gets_an_info_finding(tmp_path):
    """With a budget below the split's size the k-NN search inside it drops the shifts or runs
    approximately (never skipped); DSA204 says so (info) and how much (the share compared, the
    sampled neighbour recall) instead of staying quiet, and a rescan says the same."""
    pats = _patches(12, seed=8)
    for i in range(12):
        write_image(tmp_path / "train" / ("a" if i < 6 else "b") / f"t{i}.png", pats[i])
        if i < 4:
            write_image(tmp_path / "val" / "a" / f"v{i}.png", pats[(i + 6) % 12][::-1])
    quiet = scan(tmp_path, _config())
    assert not [f for f in quiet.findings if f.check_id == "DSA204"]
    # 12 train and 4 val images, 11 query versions: train needs 144 x 11, val 16 x 11 pairs x versions
    expected = {100.0: [("budget:train", "approximate"), ("budget:val", "no-shifts")],
                12 * 12 * 2.0: [("budget:train", "no-shifts")]}
    for budget, want in expected.items():
        res = scan(tmp_path, _config(knn_within_max_pairs=budget))
        infos = [f for f in res.findings if f.check_id == "DSA204"]
        assert [(f.subject, f.evidence["plan"]) for f in infos] == want, [(f.subject, f.evidence) for f in infos]
        assert all(f.severity.name == "INFO" and "knn_within_max_pairs" in f.hint for f in infos)
        for f in infos:
            if f.evidence["plan"] == "approximate":
                kept = f.evidence["approximate"]
                assert 0 < kept["share"] <= 1 and 0 <= kept["neighbour_recall"] <= 1 and kept["recall_sample"] == 12
                assert "approximately" in f.message and "nearest neighbours" in f.message
                assert res.sections["leakage"]["approximate_knn"]["train"] == kept


def test_an_approximate_within_split_search_still_finds_the_copies(tmp_path):
    """Over its budget, a split is searched through the inverted-file index, not skipped: a
    shifted copy that the hashes miss is still found inside train."""
    pats = _patches(30, seed=4, size=48)
    for i, p in enumerate(pats):
        write_image(tmp_path / "train" / ("a" if i % 2 else "b") / f"t{i}.png", p)
    write_image(tmp_path / "train" / "a" / "copy.png", np.roll(pats[3], 5, axis=1)[:, 5:])
    write_image(tmp_path / "val" / "a" / "v0.png", pats[5][::-1, ::-1].copy())
    for budget in (1e9, 100.0):   # exact, then approximate
        res = scan(tmp_path, _config(knn_within_max_pairs=budget))
        within = [set(f.paths) for f in res.findings if f.check_id == "DSA204" and f.paths]
        assert any({"train/a/t3.png", "train/a/copy.png"} <= w for w in within), (budget, within)
        plans = [f.evidence.get("plan") for f in res.findings if f.check_id == "DSA204" and not f.paths]
        assert plans == ([] if budget > 1e6 else ["approximate"]), plans


def test_padded_and_letterboxed_copies_are_found_and_padded_strangers_are_not(tmp_path):
    """A copy padded to a square or given a white margin lines up through the view inside its
    border; unrelated images with the same padding stay apart."""
    pats = _patches(16, seed=7, size=80)
    for i in range(8):
        write_image(tmp_path / "train" / "a" / f"t{i}.png", pats[i][:, 6:74])          # 80 x 68 pictures
    letterbox = np.zeros((80, 80, 3), np.uint8)
    letterbox[:, 6:74] = pats[0][:, 6:74]                                             # padded to a square
    write_image(tmp_path / "val" / "a" / "letterbox.jpg", letterbox, quality=85)
    margin = np.pad(pats[1][:, 6:74], ((9, 9), (9, 9), (0, 0)), constant_values=255)    # a white margin
    write_image(tmp_path / "val" / "a" / "margin.png", margin)
    for j in range(8, 16):                                                            # strangers, padded alike
        stranger = np.zeros((80, 80, 3), np.uint8)
        stranger[:, 6:74] = pats[j][:, 6:74]
        write_image(tmp_path / "val" / "a" / f"clean{j}.png", stranger)
    result = scan(tmp_path, _config())
    found = _pairs(result, "DSA202")
    assert ("train/a/t0.png", "val/a/letterbox.jpg") in found
    assert ("train/a/t1.png", "val/a/margin.png") in found
    assert not any("clean" in p for f in result.findings if f.check_id in LEAK_IDS for p in f.paths)
    transforms = {p["b"]: p["transform"] for f in result.findings if f.check_id == "DSA202"
                  for p in f.evidence["pairs"]}
    assert "pad/border" in transforms["val/a/letterbox.jpg"]


def test_a_picture_cut_to_a_square_is_found(tmp_path):
    """The centre square of a 4:3 picture (a crop of one side only: the thumbnail is stretched
    along one axis) is found through the query's one-axis squeeze and the affine fit's one-axis
    starts; other pictures cut the same way are not matched to it."""
    wide = [Image.fromarray(p).resize((128, 96), Image.Resampling.LANCZOS)
            for p in _patches(14, seed=11, size=96)]
    for i in range(10):
        write_image(tmp_path / "train" / "a" / f"t{i}.png", np.asarray(wide[i]))
    write_image(tmp_path / "val" / "a" / "square.jpg", np.asarray(wide[0].crop((16, 0, 112, 96))), quality=90)
    tall = wide[1].crop((0, 10, 128, 86))                                   # a 16:9-ish strip of a 4:3
    write_image(tmp_path / "val" / "a" / "strip.png", np.asarray(tall))
    for j in range(10, 14):
        write_image(tmp_path / "val" / "a" / f"clean{j}.png", np.asarray(wide[j].crop((16, 0, 112, 96))))
    result = scan(tmp_path, _config())
    found = _pairs(result, "DSA202")
    assert ("train/a/t0.png", "val/a/square.jpg") in found
    assert ("train/a/t1.png", "val/a/strip.png") in found
    assert not any("clean" in p for f in result.findings if f.check_id in LEAK_IDS for p in f.paths)


@pytest.mark.parametrize("copies, severity", [(2, "WARNING"), (1, "INFO")])
def test_a_fifth_of_a_class_being_copies_is_a_warning_that_names_dsa130s_count(tmp_path, copies, severity):
    """10 files in train/a: with 2 of them copies of the others (a fifth) DSA204 warns, with 1 it
    informs; the warning says how many of the class's files are named like augmentation output,
    the count DSA130 gives by name."""
    pats = _patches(12, seed=5)
    for i in range(10 - copies):
        write_image(tmp_path / "train" / "a" / f"t{i}.png", pats[i])
    for k in range(copies):   # Keras save_to_dir names: {prefix}_{index}_{hash}.{format}
        Image.open(tmp_path / "train" / "a" / f"t{k}.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
            tmp_path / "train" / "a" / f"aug_{k}_{48213 + k}.png")
    for i in range(10, 12):
        write_image(tmp_path / "val" / "a" / f"v{i}.png", pats[i])
    result = scan(tmp_path, dataclasses.replace(_config(), select=("DSA204", "DSA130")))
    within = [f for f in result.findings if f.check_id == "DSA204" and f.subject == "split:train"]
    assert len(within) == 1 and within[0].evidence["effective_counts"]["a"] == {"raw": 10, "effective": 10 - copies}
    assert within[0].severity.name == severity
    if severity == "WARNING":
        expected = f"'a': {copies} copies found, {copies} file(s) named like augmentation output (DSA130)"
        assert expected in within[0].message
        assert any(f.check_id == "DSA130" and f.evidence["files"] == copies for f in result.findings)
