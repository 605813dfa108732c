"""--keras-split F --seed S: image_dataset_from_directory(validation_split=F, subset="both", seed=S)
simulated exactly, checked against TensorFlow's own file_paths on real image folders, and the batch,
steps and class-mix checks applied to the simulated subsets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dsaudit
from dsaudit.cli import app
from dsaudit.loaders.keras import index_directory, shuffle_and_split
from imagery import make_split_dataset, real_patches, write_image


def awkward_pool(root: Path) -> Path:
    """A pool whose Keras listing differs from a depth-first walk and from dsaudit's index: nested
    folders whose names sort differently as paths ("cat/a b" < "cat/a/deep": a space sorts before "/"),
    a folder's own files before its sub-folders', an upper-case extension, a hidden
    image (Keras loads it, dsaudit skips it), a hidden class folder (Keras skips it), a .webp and a
    text file (Keras skips them)."""
    make_split_dataset(root, {"": {"cat": 9, "dog": 11, "emu": 4}}, size=32, seed=2)
    patches = iter(real_patches(9, size=32, seed=21))
    write_image(root / "cat" / "a" / "x.png", next(patches))
    write_image(root / "cat" / "a" / "deep" / "w.png", next(patches))
    write_image(root / "cat" / "a b" / "y.png", next(patches))
    write_image(root / "cat" / "zz.PNG", next(patches), fmt="PNG")
    write_image(root / "dog" / ".hidden.png", next(patches))
    write_image(root / ".ipynb_checkpoints" / "c-checkpoint.png", next(patches))
    write_image(root / "emu" / "photo.webp", next(patches))
    write_image(root / "emu" / "b.jpeg", next(patches))
    (root / "emu" / "notes.txt").write_text("not an image")
    return root


def keras_file_paths(directory: Path, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    tf = pytest.importorskip("tensorflow")
    train, val = tf.keras.utils.image_dataset_from_directory(
        str(directory), validation_split=fraction, subset="both", seed=seed, image_size=(32, 32),
        batch_size=4, verbose=False)
    rel = lambda p: os.path.relpath(p, directory).replace(os.sep, "/")  # noqa: E731
    return [rel(p) for p in train.file_paths], [rel(p) for p in val.file_paths]


@pytest.mark.slow
@pytest.mark.parametrize("fraction, seed", [(0.2, 123), (0.3, 7), (0.5, 0)])
def test_simulation_matches_tensorflow_file_paths(tmp_path, fraction, seed):
    root = awkward_pool(tmp_path / "pool")
    tf_train, tf_val = keras_file_paths(root, fraction, seed)
    report = dsaudit.scan(root, keras_split=fraction, seed=seed, jobs=1, probe=False, select=["DSA311"])
    # the index holds the loader split of the scan: the same files, in the same order, on each side
    from dsaudit.api import prepare
    from dsaudit.pipeline import build

    index = build(root, prepare(root, overrides={"batch.keras_split": fraction, "seed": seed}).config)
    assert [p for p, _ in index.loader_split.training] == tf_train
    assert [p for p, _ in index.loader_split.validation] == tf_val
    assert index.loader_split.class_names == ["cat", "dog", "emu"]
    section = report.result.sections["ordering"]["keras_split"]
    assert (section["training"], section["validation"]) == (len(tf_train), len(tf_val))


@pytest.mark.slow
def test_simulation_matches_tensorflow_on_the_train_split_folder(tmp_path):
    root = tmp_path / "data"
    make_split_dataset(root, {"train": {"a": 7, "b": 6, "c": 5}, "val": {"a": 2, "b": 2, "c": 2}}, size=32)
    tf_train, tf_val = keras_file_paths(root / "train", 0.25, 99)
    from dsaudit.api import prepare
    from dsaudit.pipeline import build

    index = build(root, prepare(root, overrides={"batch.keras_split": 0.25, "seed": 99}).config)
    split = index.loader_split
    assert split.source == "train" and split.directory == "train"
    assert [p for p, _ in split.training] == [f"train/{p}" for p in tf_train]
    assert [p for p, _ in split.validation] == [f"train/{p}" for p in tf_val]


def test_listing_order_is_keras_not_depth_first(tmp_path):
    root = awkward_pool(tmp_path / "pool")
    paths, labels, classes = index_directory(str(root))
    assert classes == ["cat", "dog", "emu"]  # the hidden folder is no class
    cat = [p for p, i in zip(paths, labels) if i == 0]
    # the class folder's own files first, then the walk sorted by folder path: a, "a b", a/deep
    # (a depth-first walk by name would give a/x, a/deep/w, "a b"/y, then the folder's own files)
    assert cat[-4:] == ["cat/zz.PNG", "cat/a/x.png", "cat/a b/y.png", "cat/a/deep/w.png"]
    assert "dog/.hidden.png" in paths and "emu/photo.webp" not in paths and "emu/b.jpeg" in paths


def test_split_sizes_follow_keras_arithmetic():
    paths = [f"c/{i}.png" for i in range(10)]
    train, val = shuffle_and_split(paths, [0] * 10, 0.25, 5)
    assert (len(train), len(val)) == (8, 2)  # int(0.25 * 10) = 2 validation files
    assert sorted(p for p, _ in train + val) == sorted(paths)
    assert shuffle_and_split(paths, [0] * 10, 0.25, 5) == (train, val)  # seeded
    assert shuffle_and_split(paths, [0] * 10, 0.05, 5)[0] == []  # int(0.5) = 0: no training files


def test_batch_and_steps_checks_apply_to_the_keras_subsets(tmp_path):
    root = tmp_path / "pool"
    make_split_dataset(root, {"": {"cat": 13, "dog": 12}}, size=32)  # 25 files: 20 train, 5 validate
    report = dsaudit.scan(root, keras_split=0.2, seed=123, batch_size=8, validation_steps=2, jobs=1, probe=False)
    remainder = {f.subject: f for f in report.by_check("DSA301")}
    assert remainder["split:pool:keras-training"].evidence["samples"] == 20
    assert remainder["split:pool:keras-validation"].evidence["samples"] == 5
    steps = report.by_check("DSA302")
    assert len(steps) == 1 and steps[0].evidence["name"] == "pool (Keras validation subset)"
    assert steps[0].evidence["samples"] == 5 and steps[0].evidence["verdict"] == "repeats"  # 2 x 8 for 5 files
    sets = report.result.sections["batching"]["sets"]
    assert {s["name"] for s in sets} >= {"pool (Keras training subset)", "pool (Keras validation subset)"}
    # no tail split is simulated beside it: one loader, one split
    assert not any("tail" in s["name"] for s in sets)


def _seed_where(paths, labels, fraction, wanted):
    return next(s for s in range(2000) if wanted(*shuffle_and_split(paths, labels, fraction, s)))


def test_a_small_class_only_in_validation_is_an_error(tmp_path):
    root = tmp_path / "pool"
    make_split_dataset(root, {"": {"big": 15, "large": 15, "tiny": 1}}, size=32)
    paths, labels, _ = index_directory(str(root))
    seed = _seed_where(paths, labels, 0.2, lambda train, val: all(not p.startswith("tiny") for p, _ in train))
    report = dsaudit.scan(root, keras_split=0.2, seed=seed, jobs=1, probe=False, select=["DSA311"])
    (finding,) = report.by_check("DSA311")
    assert finding.severity == dsaudit.Severity.ERROR and "'tiny' only in validation" in finding.message
    assert f"seed={seed}" in finding.message
    # tiny on the training side only: never validated, a warning
    other = _seed_where(paths, labels, 0.2, lambda train, val: any(p.startswith("tiny") for p, _ in train)
                        and {lab for _, lab in val} == {0, 1})
    (finding,) = dsaudit.scan(root, keras_split=0.2, seed=other, jobs=1, probe=False, select=["DSA311"]).findings
    assert finding.severity == dsaudit.Severity.WARNING and "'tiny' never in validation" in finding.message


def test_a_balanced_keras_split_is_clean(tmp_path):
    root = tmp_path / "pool"
    make_split_dataset(root, {"": {"cat": 20, "dog": 20}}, size=32)
    paths, labels, _ = index_directory(str(root))
    seed = _seed_where(paths, labels, 0.2, lambda train, val: sum(lab for _, lab in val) == 4)  # 4 of 8 dogs
    report = dsaudit.scan(root, keras_split=0.2, seed=seed, jobs=1, probe=False, select=["DSA311"])
    assert report.findings == [] and report.result.sections["ordering"]["keras_split"]["validation"] == 8


def test_files_the_loader_sees_differently_are_reported(tmp_path):
    root = awkward_pool(tmp_path / "pool")
    report = dsaudit.scan(root, keras_split=0.2, seed=1, jobs=1, probe=False, select=["DSA311"])
    listing = [f for f in report.by_check("DSA311") if f.subject == "keras-listing:pool"]
    assert len(listing) == 1
    assert "dog/.hidden.png" in listing[0].paths  # Keras loads it, the scan skips hidden files
    assert {"emu/photo.webp", "emu/notes.txt"} <= set(listing[0].paths)  # the scan indexes them, Keras never loads them


def test_keras_split_errors(tmp_path):
    root = tmp_path / "pool"
    make_split_dataset(root, {"": {"a": 3, "b": 3}}, size=32)
    with pytest.raises(dsaudit.ConfigError, match="give one of them"):
        dsaudit.scan(root, keras_split=0.2, validation_split=0.2)
    with pytest.raises(dsaudit.ConfigError, match=r"keras_split \(--keras-split\) must be a number in \(0, 1\)"):
        dsaudit.scan(root, keras_split=1.0)
    manifest = root / "m.csv"
    manifest.write_text("path,label\na/img_000.png,a\nb/img_000.png,b\n")
    res = CliRunner().invoke(app, ["scan", "--manifest", str(manifest), "--keras-split", "0.2", "-o",
                                   str(tmp_path / "o"), "-f", "json"], catch_exceptions=False)
    assert res.exit_code == 2 and "needs a local ROOT/<class>/" in res.output
