"""dsaudit.scan_datasets(train=..., val=...): the files of the loader objects users already have
(Keras datasets, torchvision ImageFolder / Subset / ConcatDataset), read by their attributes through
the manifest machinery, without importing either framework unless its objects are passed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dsaudit
from imagery import make_split_dataset, real_patches, write_image

SRC = Path(__file__).resolve().parents[1] / "src"


class FakeImageFolder:
    """The attributes torchvision's ImageFolder has: root, classes, samples [(path, class index)]."""

    def __init__(self, root: Path):
        self.root = str(root)
        self.classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        self.samples = [(str(p), i) for i, c in enumerate(self.classes) for p in sorted((root / c).rglob("*.png"))]


class FakeSubset:
    """torch.utils.data.Subset's attributes (what random_split returns)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)


class FakeConcat:
    def __init__(self, datasets):
        self.datasets = list(datasets)


class FakeKerasDataset:
    """What image_dataset_from_directory attaches to the datasets it returns."""

    def __init__(self, file_paths, class_names):
        self.file_paths, self.class_names = list(file_paths), list(class_names)


@pytest.fixture
def pool(tmp_path):
    """A pool of cat/dog photos with one image stored twice (cat/copy_a.png = cat/copy_b.png)."""
    root = tmp_path / "pool"
    make_split_dataset(root, {"": {"cat": 8, "dog": 8}}, size=32)
    patch = real_patches(1, size=32, seed=17)[0]
    write_image(root / "cat" / "copy_a.png", patch)
    write_image(root / "cat" / "copy_b.png", patch)
    return root


def _split_indices(samples, val_names):
    val = [i for i, (p, _) in enumerate(samples) if Path(p).name in val_names]
    return [i for i in range(len(samples)) if i not in val], val


def test_subsets_of_an_image_folder_are_scanned_by_split(pool):
    folder = FakeImageFolder(pool)
    train_idx, val_idx = _split_indices(folder.samples, {"copy_b.png", "img_000.png", "img_001.png"})
    report = dsaudit.scan_datasets(train=FakeSubset(folder, train_idx), val=FakeSubset(folder, val_idx),
                                   jobs=1, probe=False)
    counts = report.summary["counts"]
    assert sum(counts["train"].values()) == len(train_idx) and sum(counts["val"].values()) == len(val_idx)
    assert counts["val"] == {"cat": 3, "dog": 2}  # img_000/img_001 of both classes and copy_b
    leak = report.by_check("DSA201")
    assert leak and set(leak[0].paths) >= {"cat/copy_a.png", "cat/copy_b.png"}
    assert report.result.layout["kind"] == "manifest" and report.result.layout["manifest"].startswith("python:")
    assert report.result.root == str(pool)
    assert not report.by_check("DSA312")  # loader order is no manifest row order


def test_keras_like_datasets_and_nested_subsets(pool):
    folder = FakeImageFolder(pool)
    paths = [p for p, _ in folder.samples]
    val_paths = [p for p in paths if p.endswith(("copy_b.png", "img_007.png"))]
    train = FakeKerasDataset([p for p in paths if p not in val_paths], ["cat", "dog"])
    val = FakeKerasDataset(val_paths, ["cat", "dog"])
    report = dsaudit.scan_datasets(train=train, val=val, jobs=1, probe=False)
    assert report.summary["counts"]["val"] == {"cat": 2, "dog": 1}
    assert report.by_check("DSA201")
    # a Subset of a Subset and a ConcatDataset resolve to the right files
    inner = FakeSubset(folder, range(0, 10))
    nested = FakeSubset(inner, [0, 2, 4])
    concat = FakeConcat([nested, FakeSubset(folder, [15])])
    report = dsaudit.scan_datasets(train=concat, jobs=1, probe=False, select=["DSA0*"])
    assert sum(report.summary["counts"]["train"].values()) == 4


def test_same_machinery_as_a_manifest(pool, tmp_path):
    """A sample whose file is gone is the manifest's DSA016, a broken file DSA003, as for a CSV."""
    folder = FakeImageFolder(pool)
    folder.samples.append((str(pool / "dog" / "gone.png"), 1))
    (pool / "dog" / "empty.png").write_bytes(b"")
    folder.samples.append((str(pool / "dog" / "empty.png"), 1))
    report = dsaudit.scan_datasets(train=folder, jobs=1, probe=False, select=["DSA0*"])
    assert report.by_check("DSA016")[0].paths == ("dog/gone.png",)
    assert report.by_check("DSA003")[0].paths == ("dog/empty.png",)
    # the same rows as a CSV manifest give the same findings
    csv = tmp_path / "rows.csv"
    csv.write_text("path,label,split\n" + "".join(f"{p},{folder.classes[i]},train\n" for p, i in folder.samples))
    by_csv = dsaudit.scan(pool, manifest=csv, jobs=1, probe=False, select=["DSA0*"])
    assert [f.fingerprint for f in by_csv.findings] == [f.fingerprint for f in report.findings]


def test_options_and_errors_are_those_of_scan(pool):
    folder = FakeImageFolder(pool)
    with pytest.raises(dsaudit.ConfigError, match="did you mean batch_size"):
        dsaudit.scan_datasets(train=folder, batchsize=3)
    with pytest.raises(dsaudit.DatasetError, match="give at least one dataset"):
        dsaudit.scan_datasets()
    with pytest.raises(dsaudit.DatasetError, match="not a dataset dsaudit can read"):
        dsaudit.scan_datasets(train=[1, 2, 3])
    with pytest.raises(dsaudit.DatasetError, match="no class_names"):
        dsaudit.scan_datasets(train=FakeKerasDataset([folder.samples[0][0]], []))
    with pytest.raises(dsaudit.DatasetError, match="holds no samples"):
        dsaudit.scan_datasets(train=FakeSubset(folder, []))
    with pytest.raises(dsaudit.DatasetError, match="indices do not fit"):
        dsaudit.scan_datasets(train=FakeSubset(folder, [999]))
    with pytest.raises(dsaudit.DatasetError, match="cannot tell the class"):
        dsaudit.scan_datasets(train=FakeKerasDataset([folder.samples[0][0]], ["0", "1"]))
    report = dsaudit.scan_datasets(train=folder, batch_size=5, jobs=1, probe=False)
    assert report.by_check("DSA301")  # 18 samples in batches of 5


def test_no_framework_is_imported_for_duck_typed_objects(pool):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import dsaudit
        from test_scan_datasets import FakeImageFolder, FakeSubset
        from pathlib import Path
        folder = FakeImageFolder(Path({str(pool)!r}))
        report = dsaudit.scan_datasets(train=FakeSubset(folder, range(10)), val=FakeSubset(folder, range(10, 18)),
                                       jobs=1, probe=False)
        print(sum(report.summary["counts"]["val"].values()), [m for m in ("torch", "tensorflow", "keras")
                                                              if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["8", "[]"]


@pytest.mark.slow
def test_real_torchvision_image_folder_and_random_split(pool):
    """In a child process: torch and TensorFlow in one process can crash (an import of torch's
    triton after TensorFlow segfaulted the suite), and other tests load TensorFlow here."""
    import importlib.util
    import json

    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    code = textwrap.dedent(f"""
        import json
        from pathlib import Path
        import torch
        from torchvision import datasets
        import dsaudit
        folder = datasets.ImageFolder({str(pool)!r})
        names = [Path(p).name for p, _ in folder.samples]
        a, b = names.index("copy_a.png"), names.index("copy_b.png")
        for seed in range(100):  # a seed whose split puts the two copies on different sides
            train, val = torch.utils.data.random_split(folder, [0.75, 0.25],
                                                       generator=torch.Generator().manual_seed(seed))
            if (a in train.indices) != (b in train.indices):
                break
        report = dsaudit.scan_datasets(train=train, val=val, jobs=1, probe=False)
        print(json.dumps({{"sizes": [len(train), len(val)], "counts": report.summary["counts"],
                          "leak": list(report.by_check("DSA201")[0].paths)}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    counts = res["counts"]
    assert [sum(counts["train"].values()), sum(counts["val"].values())] == res["sizes"]
    assert set(res["leak"]) >= {"cat/copy_a.png", "cat/copy_b.png"}


@pytest.mark.slow
def test_real_keras_datasets(pool):
    tf = pytest.importorskip("tensorflow")
    from dsaudit.loaders.keras import index_directory, shuffle_and_split

    paths, labels, _ = index_directory(str(pool))
    def split_apart(seed):
        train = {p for p, _ in shuffle_and_split(paths, labels, 0.25, seed)[0]}
        return ("cat/copy_a.png" in train) != ("cat/copy_b.png" in train)

    seed = next(s for s in range(200) if split_apart(s))
    train, val = tf.keras.utils.image_dataset_from_directory(str(pool), validation_split=0.25, subset="both",
                                                             seed=seed, image_size=(32, 32), verbose=False)
    report = dsaudit.scan_datasets(train=train, val=val, jobs=1, probe=False)
    counts = report.summary["counts"]
    assert sum(counts["train"].values()) == len(train.file_paths)
    assert sum(counts["val"].values()) == len(val.file_paths)
    assert set(report.by_check("DSA201")[0].paths) >= {"cat/copy_a.png", "cat/copy_b.png"}
