"""Layout discovery: which files are samples, with which split and label, and what is reported."""

import os

import numpy as np
import pytest

from dsaudit.index.layout import DatasetError, discover
from imagery import real_patches, write_image


def _img(path, seed=0):
    return write_image(path, real_patches(1, 32, seed=seed)[0])


def test_split_folders_are_matched_case_insensitively_with_aliases(tmp_path):
    for split in ("Training", "VALID", "Test"):
        _img(tmp_path / split / "cat" / "a.png")
        _img(tmp_path / split / "dog" / "b.png")
    layout = discover(tmp_path)
    assert layout.kind == "splits"
    assert layout.splits == ["train", "val", "test"]
    assert layout.split_folders == {"train": ["Training"], "val": ["VALID"], "test": ["Test"]}
    assert {(e.split, e.label) for e in layout.entries} == {
        (s, c) for s in ("train", "val", "test") for c in ("cat", "dog")}
    assert layout.entries[0].rel == "Training/cat/a.png"


def test_unknown_top_level_folder_is_reported_not_guessed(tmp_path):
    _img(tmp_path / "train" / "cat" / "a.png")
    _img(tmp_path / "extra" / "bird" / "b.png")
    layout = discover(tmp_path)
    assert [e.rel for e in layout.entries] == ["train/cat/a.png"]
    assert [(i.kind, i.path) for i in layout.issues] == [("unknown_folder", "extra")]


def test_pool_layout_and_recursive_class_folders(tmp_path):
    _img(tmp_path / "cat" / "a.png")
    _img(tmp_path / "cat" / "sub" / "b.png")
    _img(tmp_path / "dog" / "c.png")
    layout = discover(tmp_path)
    assert layout.kind == "pool" and layout.splits == [""]
    assert [(e.rel, e.label) for e in layout.entries] == [
        ("cat/a.png", "cat"), ("cat/sub/b.png", "cat"), ("dog/c.png", "dog")]
    assert [e.order for e in layout.entries] == [0, 1, 2]


def test_hidden_system_and_stray_files_are_skipped_and_reported(tmp_path):
    _img(tmp_path / "cat" / "a.png")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "cat" / ".ipynb_checkpoints").mkdir()
    _img(tmp_path / "cat" / ".ipynb_checkpoints" / "a-checkpoint.png")
    (tmp_path / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "readme.txt").write_text("hi")
    layout = discover(tmp_path)
    assert [e.rel for e in layout.entries] == ["cat/a.png"]
    kinds = sorted((i.kind, i.path) for i in layout.issues)
    assert kinds == [("hidden", "Thumbs.db"), ("hidden", "cat/.DS_Store"),
                     ("hidden", "cat/.ipynb_checkpoints"), ("stray_file", "readme.txt")]


def test_symlink_loop_outside_and_broken_are_reported(tmp_path):
    root = tmp_path / "data"
    _img(root / "cat" / "a.png")
    outside = _img(tmp_path / "elsewhere.png", seed=1)
    os.symlink(root / "cat", root / "cat" / "loop")
    os.symlink(outside, root / "cat" / "linked.png")
    os.symlink(tmp_path / "missing.png", root / "cat" / "dangling.png")
    layout = discover(root)
    kinds = {i.kind: i.path for i in layout.issues}
    assert kinds == {"symlink_loop": "cat/loop", "symlink_outside": "cat/linked.png",
                     "symlink_broken": "cat/dangling.png"}
    # a file linked from outside is still a sample (loaders follow file links), just reported
    assert sorted(e.rel for e in layout.entries) == ["cat/a.png", "cat/linked.png"]


def test_empty_class_folder_is_reported(tmp_path):
    _img(tmp_path / "cat" / "a.png")
    (tmp_path / "dog").mkdir()
    layout = discover(tmp_path)
    assert layout.classes[""] == ["cat", "dog"]
    assert [(i.kind, i.label) for i in layout.issues] == [("empty_class", "dog")]


def test_non_utf8_and_odd_names_are_display_safe(tmp_path):
    cls = os.fsencode(str(tmp_path / "cat"))
    os.makedirs(cls)
    odd = os.path.join(cls, b"caf\xe9 <b>'\"%20.png")
    img = write_image(tmp_path / "tmp.png", np.zeros((16, 16, 3), np.uint8))
    os.rename(img, odd)
    layout = discover(tmp_path)
    (entry,) = layout.entries
    assert entry.rel == "cat/caf\\xe9 <b>'\"%20.png"
    entry.rel.encode("utf-8")  # printable and JSON-safe
    assert os.path.exists(entry.abs_path)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: _img(p / "file.png"), "not a folder"),
    (lambda p: p, "no class folders and no images"),
])
def test_unusable_roots_raise_one_clear_error(tmp_path, make, message):
    with pytest.raises(DatasetError, match=message):
        discover(make(tmp_path))


def test_images_without_class_folders_explain_the_expected_layout(tmp_path):
    _img(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="no class folders"):
        discover(tmp_path)


def test_manifest_with_splits_groups_and_problems(tmp_path):
    _img(tmp_path / "imgs" / "a.png")
    _img(tmp_path / "imgs" / "b.png", seed=1)
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label,split,group\nimgs/a.png,cat,Training,p1\nimgs/b.png,dog,val,p2\n"
                        "imgs/missing.png,dog,val,p3\nimgs/a.png,cat,unlabelled,p1\n,cat,train,\n")
    layout = discover(tmp_path, manifest)
    assert layout.kind == "manifest"
    assert [(e.rel, e.split, e.label, e.group) for e in layout.entries] == [
        ("imgs/a.png", "train", "cat", "p1"), ("imgs/b.png", "val", "dog", "p2")]
    assert sorted(i.kind for i in layout.issues) == ["manifest_bad_row", "manifest_missing",
                                                     "unknown_split_value"]


def test_manifest_without_required_columns_is_a_dataset_error(tmp_path):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("file,class\na.png,cat\n")
    with pytest.raises(DatasetError, match="needs columns 'path' and 'label'"):
        discover(tmp_path, manifest)
