"""Split folders read the way their owners laid them out: by name in any form, through one wrapper
folder, by shape when names say nothing, or as given with --split; each with real image files."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsaudit.cli import app
from dsaudit.config import AuditConfig, ConfigError, ProbeConfig, load_config
from dsaudit.index.layout import DatasetError, discover
from dsaudit.index.splits import split_of_name
from dsaudit.pipeline import scan
from imagery import real_patches, write_image

CLASSES = ("NORMAL", "PNEUMONIA")


def _tree(root, folders: dict[str, int], classes=CLASSES, seed=0):
    """Real PNGs: folders maps a folder path (relative to root) to images per class inside it."""
    total = sum(folders.values()) * len(classes)
    patches = iter(real_patches(total, 32, seed=seed, stride=16))
    for folder, n in folders.items():
        for label in classes:
            for i in range(n):
                write_image(root / folder / label / f"{label.lower()}_{i}.png", next(patches))


def _read(layout):
    return layout.kind, layout.splits, {s: layout.classes[s] for s in layout.splits}


@pytest.mark.parametrize("name, split", [
    ("TrainingData", "train"), ("train_dir", "train"), ("training_set", "train"), ("seg_train", "train"),
    ("Train_Images", "train"), ("trn", "train"), ("trainset", "train"), ("TRAIN", "train"),
    ("val_dir", "val"), ("Validation", "val"), ("valid", "val"), ("dev", "val"), ("ValSet", "val"),
    ("images_test", "test"), ("TestingData", "test"), ("eval", "test"), ("holdout", "test"),
    ("seg_pred", None), ("train_test", None), ("cats", None), ("contest", None), ("devices", None),
    ("Covid-19CT", None),
])
def test_split_words_are_found_in_any_case_and_form(name, split):
    assert split_of_name(name) == split


def test_covid_ct_training_and_testing_data_inside_a_wrapper_folder(tmp_path):
    """The poster's Covid-19CT/TrainingData + TestingData, scanned from the folder above it."""
    _tree(tmp_path / "base", {"Covid-19CT/TrainingData": 3, "Covid-19CT/TestingData": 2})
    layout = discover(tmp_path / "base")
    assert _read(layout) == ("splits", ["train", "test"], {"train": list(CLASSES), "test": list(CLASSES)})
    assert layout.split_folders == {"train": ["Covid-19CT/TrainingData"], "test": ["Covid-19CT/TestingData"]}
    assert "the only top-level folder" in layout.reading[0]
    assert "'TrainingData' -> train" in layout.reading[1] and "'TestingData' -> test" in layout.reading[1]
    # and scanned from Covid-19CT itself
    direct = discover(tmp_path / "base" / "Covid-19CT")
    assert _read(direct) == _read(layout)


def test_covid_ct_copies_between_the_splits_are_leakage_not_two_labels(tmp_path):
    """The poster got 'copies of one image under 2 classes (TestingData, TrainingData)' 19 times."""
    root = tmp_path / "Covid-19CT"
    _tree(root, {"TrainingData": 4, "TestingData": 2})
    copy = root / "TestingData" / "NORMAL" / "normal_0.png"
    copy.write_bytes((root / "TrainingData" / "NORMAL" / "normal_1.png").read_bytes())
    result = scan(root, AuditConfig(cache=False, jobs=1, probe=ProbeConfig(mode="off")))
    ids = {f.check_id for f in result.findings}
    assert "DSA201" in ids and "DSA203" not in ids
    assert result.layout["classes"] == {"train": list(CLASSES), "test": list(CLASSES)}


def test_train_dir_and_val_dir_under_base_dir(tmp_path):
    _tree(tmp_path / "base_dir", {"train_dir": 3, "val_dir": 2})
    layout = discover(tmp_path / "base_dir")
    assert _read(layout) == ("splits", ["train", "val"], {"train": list(CLASSES), "val": list(CLASSES)})
    assert layout.entries[0].rel == "train_dir/NORMAL/normal_0.png"


@pytest.mark.parametrize("train, test", [("training_set", "test_set"), ("seg_train", "seg_test")])
def test_kaggle_doubled_folders_are_read_through(tmp_path, train, test):
    _tree(tmp_path, {f"{train}/{train}": 3, f"{test}/{test}": 2})
    layout = discover(tmp_path)
    assert _read(layout) == ("splits", ["train", "test"], {"train": list(CLASSES), "test": list(CLASSES)})
    assert layout.split_folders == {"train": [f"{train}/{train}"], "test": [f"{test}/{test}"]}
    assert f"{train!r} holds only the folder {train!r}, read through" in layout.reading[0]
    assert not [i for i in layout.issues if i.kind != "hidden"]


def test_train_images_and_images_test(tmp_path):
    _tree(tmp_path, {"Train_Images": 3, "images_test": 2})
    assert _read(discover(tmp_path)) == ("splits", ["train", "test"],
                                         {"train": list(CLASSES), "test": list(CLASSES)})


def test_a_data_folder_around_the_splits_and_an_images_folder_inside_one(tmp_path):
    _tree(tmp_path, {"data/train/images": 3, "data/val": 2})
    (tmp_path / "data" / "README.txt").write_text("from kaggle")
    layout = discover(tmp_path)
    assert _read(layout) == ("splits", ["train", "val"], {"train": list(CLASSES), "val": list(CLASSES)})
    assert layout.split_folders == {"train": ["data/train/images"], "val": ["data/val"]}
    assert [(i.kind, i.path) for i in layout.issues] == [("stray_file", "data/README.txt")]


def test_folders_with_the_same_classes_are_splits_when_names_say_nothing(tmp_path):
    _tree(tmp_path, {"A": 4, "B": 2})
    layout = discover(tmp_path)
    assert _read(layout) == ("splits", ["train", "val"], {"train": list(CLASSES), "val": list(CLASSES)})
    assert layout.split_folders == {"train": ["A"], "val": ["B"]}
    assert "by shape" in layout.reading[0] and "'A' -> train" in layout.reading[0]
    warned = [i for i in layout.issues if i.kind == "ambiguous_layout"]
    assert len(warned) == 1 and "--split train=FOLDER" in warned[0].detail
    result = scan(tmp_path, AuditConfig(cache=False, jobs=1, probe=ProbeConfig(mode="off")))
    dsa017 = [f for f in result.findings if f.check_id == "DSA017"]
    assert len(dsa017) == 1 and "'A' -> train, 'B' -> val" in dsa017[0].message


def test_folders_with_different_classes_stay_a_pool(tmp_path):
    _tree(tmp_path / "A", {"": 1}, classes=("x", "y"))
    _tree(tmp_path / "B", {"": 1}, classes=("u", "v"), seed=3)
    layout = discover(tmp_path)
    assert layout.kind == "pool" and layout.classes[""] == ["A", "B"]
    assert not [i for i in layout.issues if i.kind == "ambiguous_layout"]
    assert "one pool" in layout.reading[0]


def test_a_folder_beside_the_splits_with_their_classes_is_a_warning_naming_the_choice(tmp_path):
    _tree(tmp_path, {"train": 2, "extra": 1})
    layout = discover(tmp_path)
    assert layout.splits == ["train"]
    kinds = {(i.kind, i.path) for i in layout.issues}
    assert ("unknown_folder", "extra") in kinds and ("ambiguous_layout", "extra") in kinds
    detail = next(i.detail for i in layout.issues if i.kind == "ambiguous_layout")
    assert "not scanned" in detail and "--split val=extra" in detail


def test_a_pool_whose_classes_look_like_split_names_is_a_warning(tmp_path):
    for i, folder in enumerate(("train", "test")):
        for j in range(2):
            write_image(tmp_path / folder / f"{j}.png", real_patches(4, 32, seed=1)[2 * i + j])
    layout = discover(tmp_path)
    assert layout.kind == "pool" and layout.classes[""] == ["test", "train"]
    warned = [i for i in layout.issues if i.kind == "split_named_classes"]
    assert len(warned) == 1 and "'train'" in warned[0].detail
    result = scan(tmp_path, AuditConfig(cache=False, jobs=1, probe=ProbeConfig(mode="off")))
    assert [f.title for f in result.findings if f.check_id == "DSA017"] == ["Classes named like splits: test, train"]


def test_manifest_labels_named_like_splits_are_a_warning(tmp_path):
    write_image(tmp_path / "a.png", real_patches(1, 32)[0])
    (tmp_path / "labels.csv").write_text("path,label\na.png,train\n")
    layout = discover(tmp_path, tmp_path / "labels.csv")
    assert [i.kind for i in layout.issues] == ["split_named_classes"]


def test_split_option_overrides_the_reading(tmp_path):
    _tree(tmp_path, {"first": 3, "second": 2, "third": 1})
    layout = discover(tmp_path, chosen={"train": ["second"], "val": ["third"]})
    assert layout.split_folders == {"train": ["second"], "val": ["third"]}
    assert layout.reading == ["splits given by --split: train=second, val=third"]
    assert [(i.kind, i.path) for i in layout.issues] == [("unknown_folder", "first")]
    nested = discover(tmp_path.parent, chosen={"train": [f"{tmp_path.name}/first"]})
    assert nested.split_folders == {"train": [f"{tmp_path.name}/first"]}
    with pytest.raises(DatasetError, match="--split val=nowhere: no such folder"):
        discover(tmp_path, chosen={"val": ["nowhere"]})


def test_split_option_on_the_command_line(tmp_path):
    _tree(tmp_path / "data", {"first": 3, "second": 2})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "data"), "-o", str(out), "-f", "json",
                                      "--no-cache", "--split", "train=second", "--split", "validation=first"])
    assert result.exit_code in (0, 1), result.output
    assert "layout read as: splits given by --split: train=second, val=first" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["layout"]["split_folders"] == {"train": ["second"], "val": ["first"]}
    assert report["layout"]["reading"] == ["splits given by --split: train=second, val=first"]
    bad = CliRunner().invoke(app, ["scan", str(tmp_path / "data"), "-o", str(out), "--split", "holdback=first"])
    assert bad.exit_code == 2 and "not a split name" in bad.output


def test_split_config_values_are_checked():
    with pytest.raises(ConfigError, match="must be SPLIT=FOLDER"):
        load_config(None, None, {"splits": ["train"]})
    cfg, _ = load_config(None, None, {"splits": ["Training=a/b/", "val=c"]})
    assert cfg.chosen_splits() == {"train": ["a/b"], "val": ["c"]}


def test_the_report_says_how_the_layout_was_read(tmp_path):
    _tree(tmp_path / "ds", {"training_set/training_set": 2, "test_set/test_set": 1})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "ds"), "-o", str(out), "--no-cache", "--no-probe"])
    assert result.exit_code in (0, 1), result.output
    assert "layout read as: split folders by name" in result.output
    html = (out / "report.html").read_text()
    assert "How the layout was read" in html and "read through" in html


@pytest.mark.parametrize("folders", [
    {"Covid-19CT/TrainingData": 2, "Covid-19CT/TestingData": 1},   # a wrapper around named splits
    {"training_set/training_set": 2, "test_set/test_set": 1},       # Kaggle's doubled folders
    {"A": 2, "B": 1},                                               # names say nothing: by shape
])
def test_object_storage_reads_the_layout_as_the_local_walk_does(tmp_path, folders):
    import fsspec

    _tree(tmp_path / "data", folders)
    (tmp_path / "data" / "notes.txt").write_text("x")
    fs = fsspec.filesystem("memory")
    for path in sorted((tmp_path / "data").rglob("*")):
        if path.is_file():
            fs.pipe(f"/dsaudit-layout/data/{path.relative_to(tmp_path / 'data').as_posix()}", path.read_bytes())
    try:
        local = discover(tmp_path / "data")
        remote = discover("memory://dsaudit-layout/data/")
        assert (remote.kind, remote.split_folders, remote.classes, remote.reading) == (
            local.kind, local.split_folders, local.classes, local.reading)
        rows = [[(e.rel, e.split, e.label) for e in layout.entries] for layout in (remote, local)]
        assert rows[0] == rows[1]
        assert sorted((i.kind, i.path) for i in remote.issues) == sorted((i.kind, i.path) for i in local.issues)
    finally:
        fs.rm("/dsaudit-layout", recursive=True)
