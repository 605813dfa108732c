"""The Dask engine on a real LocalCluster (two worker processes): same index and findings as the
local engine, results in order, progress, dead workers retried, unreadable files as records."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imagery import make_split_dataset, real_patches, write_image

try:
    import distributed
except ImportError:  # the helpers below are shared with test_remote.py, which needs no Dask
    distributed = None
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(distributed is None, reason="needs dask[distributed] (pip install 'dsaudit[dask]')")]


def make_problem_dataset(root: Path) -> Path:
    """About 30 tiny real images in train/val/test with flaws that several checks find: an exact copy
    and a re-encoded copy across splits, a truncated JPEG, an empty file, a text file named .png,
    a hidden file, a stray file and an unknown top-level folder."""
    files = make_split_dataset(root, {"train": {"cat": 8, "dog": 8}, "val": {"cat": 4, "dog": 4},
                                      "test": {"cat": 3, "dog": 3}}, size=32, seed=3)
    shutil.copyfile(files["train"]["cat"][0], root / "val" / "cat" / "copy_of_train.png")
    from PIL import Image

    with Image.open(files["train"]["dog"][1]) as im:
        im.convert("RGB").save(root / "test" / "dog" / "reencoded.jpg", quality=90)
    extra = real_patches(1, size=32, seed=99)[0]
    jpeg = write_image(root / "train" / "dog" / "cut.jpg", extra, fmt="JPEG")
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    (root / "train" / "cat" / "empty.png").write_bytes(b"")
    (root / "val" / "dog" / "notes.png").write_text("not an image\n")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "train" / "README.txt").write_text("stray\n")
    (root / "extras" / "cat").mkdir(parents=True)
    write_image(root / "extras" / "cat" / "x.png", real_patches(2, size=32, seed=7)[1])
    return root


def findings_key(result) -> list[tuple]:
    """Order-independent comparison key: check, severity, paths (relative to root) and subject."""
    return sorted((f.check_id, str(f.severity), tuple(sorted(f.paths)), f.subject) for f in result.findings)


def assert_flaws_found(ids: set[str]) -> None:
    """The planted flaws are really reported (so that equal findings are not trivially equal)."""
    from dsaudit.checks.registry import all_checks

    assert {"DSA002", "DSA003", "DSA004", "DSA013"} <= ids, ids
    if any(c.id.startswith("DSA2") for c in all_checks()):     # once leakage checks are registered
        assert any(i.startswith("DSA2") for i in ids), ids     # the copies across splits are found


def table_key(index):
    cols = [c for c in index.table.columns if c not in ("abs_path", "mtime_ns")]
    table = index.table[cols].sort_values("path").reset_index(drop=True)
    # PIL's "cannot identify image file <_io.BytesIO object at 0x...>" differs from run to run
    table["error"] = table["error"].str.replace(r" at 0x[0-9a-f]+", " at 0x", regex=True)
    return table


def config(**overrides):
    from dsaudit.config import load_config

    base = {"cache": False, "probe.mode": "off", "seed": 0}
    base.update(overrides)
    return load_config(None, None, base)[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_problem_dataset(tmp_path_factory.mktemp("ds") / "data")


def test_dask_scan_gives_the_same_index_and_findings_as_local(dataset, cluster):
    from dsaudit.pipeline import build, scan

    local = scan(dataset, config(engine="local", jobs=1))
    dask = scan(dataset, config(engine="dask", scheduler=cluster.scheduler_address))
    assert findings_key(local) == findings_key(dask)
    ids = {k[0] for k in findings_key(local)}
    assert_flaws_found(ids)
    a = build(dataset, config(engine="local", jobs=1))
    b = build(dataset, config(engine="dask", scheduler=cluster.scheduler_address))
    assert table_key(a).equals(table_key(b))
    assert list(a.table["path"]) == list(b.table["path"])        # same order, not only same rows
    assert set(a.features) == set(b.features)
    for name in a.features:
        assert (a.features[name] == b.features[name]).all(), name


def _double(x: int) -> int:
    return x * 2


def test_results_in_input_order_with_progress(client):
    from dsaudit.index import dask_engine

    seen: list[int] = []
    out = dask_engine.run(_double, list(range(101)), client=client, progress=seen.append, partition_size=7)
    assert out == [2 * i for i in range(101)]
    assert sum(seen) == 101 and len(seen) == 15                   # one tick per partition


def _worker_pid(_: int) -> int:
    return os.getpid()


def test_scheduler_from_environment(client, cluster, monkeypatch):
    from dsaudit.index import dask_engine

    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
    pids = set(dask_engine.run(_worker_pid, list(range(20)), scheduler=""))
    assert pids and pids <= set(client.run(os.getpid).values())  # ran on the existing cluster
    assert os.getpid() not in pids


def _die_once(item: tuple[int, str]) -> int:
    value, marker = item
    if value == 5 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)                                                # the worker process dies mid-task
    return value


def test_dead_worker_tasks_are_retried(client, tmp_path):
    from dsaudit.index import dask_engine

    marker = str(tmp_path / "died")
    items = [(i, marker) for i in range(12)]
    out = dask_engine.run(_die_once, items, client=client, partition_size=3)
    assert os.path.exists(marker)                                  # a worker really died
    assert out == list(range(12))


def _always_die(item: int) -> int:
    if item == 4:
        os._exit(1)
    return item


def test_file_that_kills_every_worker_gets_a_crash_record(client):
    from dsaudit.index import dask_engine

    out = dask_engine.run(_always_die, list(range(8)), client=client, partition_size=4,
                          crash_result=lambda item: f"crashed {item}")
    assert out == [0, 1, 2, 3, "crashed 4", 5, 6, 7]


def test_unreadable_file_is_a_record_not_a_failed_scan(dataset, client):
    from dsaudit.index import dask_engine
    from dsaudit.index.records import analyse_file

    good = str(next((dataset / "train" / "cat").glob("img_*.png")))
    tasks = [(good, "png", 10**8), (str(dataset / "train" / "cat" / "gone.png"), "png", 10**8)]
    out = dask_engine.run(analyse_file, tasks, client=client)
    assert out[0]["readable"] and out[0]["kind"] == "image"
    assert not out[1]["readable"] and out[1]["error"].startswith("cannot read file")


def test_unreachable_scheduler_is_a_clear_error():
    from dsaudit.index import dask_engine

    with pytest.raises(dask_engine.EngineError, match="cannot connect to the Dask scheduler"):
        dask_engine.connect("tcp://127.0.0.1:9", timeout="1s")


def test_cli_engine_and_scheduler_options(dataset, cluster, tmp_path):
    import json

    from typer.testing import CliRunner

    from dsaudit.cli import app

    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["scan", str(dataset), "--engine", "dask", "--scheduler",
                                   cluster.scheduler_address, "--no-probe", "--no-cache", "-f", "json",
                                   "-o", str(out), "-q"])
    assert res.exit_code in (0, 1), res.output
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["engine"] == "dask"
    assert any(f["check_id"] == "DSA013" for f in report["findings"])
    bad = CliRunner().invoke(app, ["scan", str(dataset), "--engine", "spark", "-q", "-o", str(out)])
    assert bad.exit_code == 2
    # file:///path is the local folder (fsspec's spelling), the same scan as the plain path
    res2 = CliRunner().invoke(app, ["scan", "file://" + str(dataset), "--no-probe", "--no-cache", "-f", "json",
                                    "-o", str(tmp_path / "r2"), "-q", "-j", "1"])
    assert res2.exit_code in (0, 1), res2.output
    again = json.loads((tmp_path / "r2" / "report.json").read_text())
    key = lambda r: sorted((f["check_id"], tuple(f["paths"]), f["subject"]) for f in r["findings"])  # noqa: E731
    assert key(again) == key(report)
