"""Datasets on S3 through fsspec/s3fs, against a real S3 API: moto's server on 127.0.0.1 (a free
port, started here). Local, S3 and S3-on-Dask scans of the same files give the same findings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_dask import assert_flaws_found, config, findings_key, make_problem_dataset, table_key

pytest.importorskip("fsspec")
pytestmark = pytest.mark.slow

BUCKET = "dsaudit-test"
# Fake credentials for the fake server: set in the environment, read by botocore as usual.
FAKE_ENV = {"AWS_ACCESS_KEY_ID": "fake-key-id", "AWS_SECRET_ACCESS_KEY": "fake-secret-value-123",
            "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """moto in server mode on loopback; s3fs is pointed at it through fsspec's environment config
    (FSSPEC_S3_ENDPOINT_URL) and botocore's (AWS_ENDPOINT_URL_S3), which Dask workers inherit."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    mp = pytest.MonkeyPatch()
    for k, v in FAKE_ENV.items():
        mp.setenv(k, v)
    mp.setenv("FSSPEC_S3_ENDPOINT_URL", endpoint)
    mp.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    import fsspec.config

    saved = {k: dict(v) for k, v in fsspec.config.conf.items()}
    fsspec.config.set_conf_env(fsspec.config.conf)       # fsspec read its environment at import
    try:
        yield endpoint
    finally:
        fsspec.config.conf.clear()
        fsspec.config.conf.update(saved)
        mp.undo()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def s3_client(s3_server):
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def upload(client, local_root: Path, prefix: str) -> str:
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(local_root).as_posix()}"
            client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    return f"s3://{BUCKET}/{prefix}/"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_problem_dataset(tmp_path_factory.mktemp("ds") / "data")


@pytest.fixture(scope="module")
def s3_dataset(s3_client, dataset) -> str:
    return upload(s3_client, dataset, "copies/data")


def test_local_dask_and_s3_scans_give_identical_findings(dataset, s3_dataset):
    """The acceptance test: same files, three ways, same findings and the same index table."""
    pytest.importorskip("distributed")
    from dsaudit.pipeline import build, scan

    local = scan(dataset, config(engine="local", jobs=1))
    on_s3 = scan(s3_dataset, config(engine="local", jobs=2))
    # a LocalCluster started by the engine itself (no --scheduler): its workers inherit the
    # endpoint and the credentials from the environment, as workers of a real cluster would
    s3_dask = scan(s3_dataset, config(engine="dask"))
    assert findings_key(local) == findings_key(on_s3) == findings_key(s3_dask)
    assert_flaws_found({k[0] for k in findings_key(local)})
    assert on_s3.layout == local.layout
    assert on_s3.root == s3_dataset.rstrip("/")
    a = build(dataset, config(engine="local", jobs=1))
    b = build(s3_dataset, config(engine="local", jobs=1))
    assert list(a.table["path"]) == list(b.table["path"])       # same relative paths, same order
    assert table_key(a).equals(table_key(b))
    assert b.table["abs_path"].str.startswith(s3_dataset).all()
    from dsaudit.index.thumbnails import thumbnail_uri as _thumbnail

    readable = b.table[b.table["readable"]]["abs_path"].iloc[0]
    assert _thumbnail(readable).startswith("data:image/jpeg;base64,")   # report thumbnails from S3
    assert [(i.kind, i.path, i.split, i.label) for i in a.layout.issues] == \
        [(i.kind, i.path, i.split, i.label) for i in b.layout.issues]


def test_pool_layout_and_listing_rules(tmp_path, s3_client):
    """A pool (ROOT/<class>/) with nested folders, a hidden folder and a file at the top level."""
    from dsaudit.index.layout import discover
    from imagery import real_patches, write_image

    root = tmp_path / "pool"
    patches = real_patches(4, size=16, seed=5)
    write_image(root / "a" / "x.png", patches[0])
    write_image(root / "a" / "sub" / "y.png", patches[1])
    write_image(root / "a.b" / "z.png", patches[2])
    write_image(root / ".cache" / "w.png", patches[3])
    (root / "a" / ".hidden.png").write_bytes(b"x")
    (root / "notes.txt").write_text("n")
    write_image(root / "a" / "odd name, ü & #1 (copy).png", patches[0])     # untrusted file names
    url = upload(s3_client, root, "pool")
    local, remote = discover(root), discover(url)
    assert remote.kind == local.kind == "pool"
    assert [(e.rel, e.split, e.label, e.order) for e in remote.entries] == \
        [(e.rel, e.split, e.label, e.order) for e in local.entries]
    assert [(i.kind, i.path) for i in remote.issues] == [(i.kind, i.path) for i in local.issues]
    assert remote.classes == local.classes
    from dsaudit.index import io

    odd = next(e for e in remote.entries if "odd" in e.rel)
    assert io.read_bytes(odd.abs_path) == (root / odd.rel).read_bytes()
    assert io.stat(odd.abs_path)[0] == (root / odd.rel).stat().st_size


def test_cache_keys_on_the_etag(tmp_path, s3_client):
    from dsaudit.pipeline import build
    from imagery import real_patches, write_image

    root = tmp_path / "small"
    for i, patch in enumerate(real_patches(6, size=16, seed=11)):
        write_image(root / ("a" if i % 2 else "b") / f"{i}.png", patch)
    url = upload(s3_client, root, "cached")
    cfg = config(cache=True, jobs=1)
    first = build(url, cfg)
    assert first.stats == {"cache_hits": 0, "decoded": 6}
    assert build(url, cfg).stats == {"cache_hits": 6, "decoded": 0}
    # overwrite one object with other content: new ETag, so it (and only it) is decoded again
    key = "cached/a/1.png"
    other = write_image(tmp_path / "other.png", real_patches(1, size=16, seed=12)[0])
    s3_client.put_object(Bucket=BUCKET, Key=key, Body=other.read_bytes())
    third = build(url, cfg)
    assert third.stats == {"cache_hits": 5, "decoded": 1}
    changed = third.table.set_index("path").loc["a/1.png", "sha256"]
    assert changed != first.table.set_index("path").loc["a/1.png", "sha256"]


def test_unreadable_object_is_a_finding_not_a_failed_scan(tmp_path, s3_client):
    """An object deleted between listing and reading: an unreadable-file record, the scan goes on."""
    from dsaudit.index import build as build_mod
    from dsaudit.index.layout import discover
    from imagery import real_patches, write_image

    root = tmp_path / "vanish"
    for i, patch in enumerate(real_patches(4, size=16, seed=21)):
        write_image(root / ("a" if i % 2 else "b") / f"{i}.png", patch)
    url = upload(s3_client, root, "vanish")
    layout = discover(url)
    s3_client.delete_object(Bucket=BUCKET, Key="vanish/a/1.png")
    index = build_mod.build_index(layout, config(jobs=1))
    row = index.table.set_index("path").loc["a/1.png"]
    assert not row["readable"] and "cannot read" in row["error"]
    assert index.table["readable"].sum() == 3


def test_manifest_on_s3(tmp_path, s3_client):
    from dsaudit.index.layout import discover
    from imagery import real_patches, write_image

    root = tmp_path / "man"
    for i, patch in enumerate(real_patches(3, size=16, seed=31)):
        write_image(root / "img" / f"{i}.png", patch)
    (root / "labels.csv").write_text("path,label,split\nimg/0.png,cat,train\nimg/1.png,dog,val\n"
                                     "img/9.png,dog,val\nimg/2.png,cat,bogus\n")
    upload(s3_client, root, "man")
    layout = discover(None, f"s3://{BUCKET}/man/labels.csv")
    assert layout.kind == "manifest" and layout.splits == ["train", "val"]
    assert [(e.rel, e.split, e.label) for e in layout.entries] == [("img/0.png", "train", "cat"),
                                                                   ("img/1.png", "val", "dog")]
    assert sorted(i.kind for i in layout.issues) == ["manifest_missing", "unknown_split_value"]
    from dsaudit.pipeline import scan

    result = scan(f"s3://{BUCKET}/man/", config(jobs=1), manifest=f"s3://{BUCKET}/man/labels.csv")
    assert result.layout["kind"] == "manifest" and result.summary["files"] == 2


def test_bad_roots_are_one_line_errors(s3_client):
    from dsaudit.index.layout import DatasetError, discover

    with pytest.raises(DatasetError, match="does not exist"):
        discover(f"s3://{BUCKET}/no/such/prefix/")
    s3_client.put_object(Bucket=BUCKET, Key="flat/a.png", Body=b"x")
    with pytest.raises(DatasetError, match="no class folders"):
        discover(f"s3://{BUCKET}/flat/")
    with pytest.raises(DatasetError, match="not a folder"):
        discover(f"s3://{BUCKET}/flat/a.png")


def test_cli_scan_of_s3_url_writes_no_credentials(s3_dataset, tmp_path, monkeypatch):
    """`dsaudit scan s3://...` end to end in a subprocess; the report names the URL, never a secret."""
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "dsaudit.cli", "scan", s3_dataset, "-f", "json,html",
                           "--no-probe", "-j", "1"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CI": "1"})
    assert proc.returncode in (0, 1), proc.stderr
    out = tmp_path / "reports" / "data"                      # report folder named after the prefix
    text = (out / "report.json").read_text() + (out / "report.html").read_text() + proc.stdout + proc.stderr
    assert s3_dataset.rstrip("/") in text
    for secret in (FAKE_ENV["AWS_SECRET_ACCESS_KEY"], FAKE_ENV["AWS_ACCESS_KEY_ID"]):
        assert secret not in text


def test_version_stamp_prefers_etag_then_modification_time():
    import datetime as dt

    from dsaudit.index.objects import version_stamp

    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    a = version_stamp({"ETag": '"abc"', "LastModified": when})
    assert a == version_stamp({"ETag": '"abc"', "LastModified": when + dt.timedelta(days=1)})
    assert a != version_stamp({"ETag": '"abd"', "LastModified": when})
    assert 0 < a < 2**63                                         # fits SQLite and int64 columns
    assert version_stamp({"LastModified": when}) == int(when.timestamp()) * 10**9
    assert version_stamp({"mtime": 1.5}) == 1_500_000_000


def test_missing_backend_is_a_one_line_hint():
    from dsaudit.index.layout import DatasetError, discover

    with pytest.raises(DatasetError, match="cannot open nosuchproto:// URLs"):
        discover("nosuchproto://bucket/data/")


def test_prefetched_objects_are_read_without_another_request(tmp_path, s3_client):
    from dsaudit.index import objects as remote

    s3_client.put_object(Bucket=BUCKET, Key="pre/a.bin", Body=b"abc" * 100)
    url = f"s3://{BUCKET}/pre/a.bin"
    assert remote.prefetch([url, f"s3://{BUCKET}/pre/missing.bin"]) == 1
    s3_client.delete_object(Bucket=BUCKET, Key="pre/a.bin")
    assert remote.read_bytes(url) == b"abc" * 100               # from the prefetch
    with pytest.raises(OSError):
        remote.read_bytes(url)                                    # consumed; the object is gone


def _stat_on_worker(task: tuple[str, str, int]) -> tuple[int, int]:
    from dsaudit.index import io

    return io.stat(task[0])


def test_dask_workers_get_sizes_and_etags_from_the_listing(tmp_path, s3_client):
    """Workers answer stat() from the listing shipped with the partition: no HEAD per object (shown
    by deleting an object after listing: a HEAD would fail)."""
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    from dsaudit.index import dask_engine
    from dsaudit.index import objects as remote
    from dsaudit.index.layout import discover
    from imagery import real_patches, write_image

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    root = tmp_path / "seed"
    for i, patch in enumerate(real_patches(4, size=16, seed=41)):
        write_image(root / "a" / f"{i}.png", patch)
    url = upload(s3_client, root, "seed")
    layout = discover(url)
    s3_client.delete_object(Bucket=BUCKET, Key="seed/a/2.png")
    tasks = [(e.abs_path, "png", 10**8) for e in layout.entries]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        out = dask_engine.run(_stat_on_worker, tasks, client=client)
    assert out == [remote.stat(t[0]) for t in tasks]
    assert out[2][0] == (root / "a" / "2.png").stat().st_size


def test_run_batch_prefetches_in_windows_and_keeps_order(s3_dataset, monkeypatch):
    from dsaudit.index import objects as remote
    from dsaudit.index.layout import discover
    from dsaudit.index.records import analyse_file

    layout = discover(s3_dataset)
    tasks = [(e.abs_path, e.abs_path.rsplit(".", 1)[-1].lower(), 10**8) for e in layout.entries[:9]]
    calls: list[int] = []
    real_prefetch = remote.prefetch
    monkeypatch.setattr(remote, "prefetch", lambda urls: calls.append(real_prefetch(urls)) or calls[-1])
    monkeypatch.setattr(remote, "PREFETCH_WINDOW", 2500)          # about two 32 px PNGs per window
    out = remote.run_batch(analyse_file, tasks)
    assert [r["sha256"] for r in out] == [analyse_file(t)["sha256"] for t in tasks]
    assert len(calls) > 2 and sum(calls) == sum(1 for t in tasks if remote.stat(t[0])[0] > 0)
    assert not remote._prefetched                                 # nothing left behind


def test_any_fsspec_store_memory_filesystem(tmp_path):
    """A store without ETags (fsspec's in-memory filesystem; stamps from the creation time), read
    through the same layer: same findings as the local folder. Needs only fsspec."""
    import fsspec

    from dsaudit.pipeline import scan

    local = make_problem_dataset(tmp_path / "data")
    fs = fsspec.filesystem("memory")
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe(f"/dsaudit-test/data/{path.relative_to(local).as_posix()}", path.read_bytes())
    try:
        a = scan(local, config(jobs=1))
        b = scan("memory://dsaudit-test/data/", config(jobs=2))
        assert findings_key(a) == findings_key(b)
        assert_flaws_found({k[0] for k in findings_key(b)})
    finally:
        fs.rm("/dsaudit-test", recursive=True)


@pytest.mark.parametrize("files", [
    {"train/readme.txt": b"x", "val/a/.x.png": b"x"},      # a split folder with no class folder
    {"train/a/.hidden.png": b"x", "val/b/.DS_Store": b"x"},  # class folders that hold only hidden files
], ids=["no-class-folders", "only-hidden-files"])
def test_no_files_error_says_why_as_for_a_local_folder(tmp_path, files):
    """An empty remote layout explains itself with the same words as the same local folder."""
    import fsspec

    from dsaudit.index.layout import DatasetError, discover

    fs = fsspec.filesystem("memory")
    for rel, body in files.items():
        fs.pipe(f"/dsaudit-empty/data/{rel}", body)
        (tmp_path / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / rel).write_bytes(body)
    try:
        with pytest.raises(DatasetError) as local:
            discover(tmp_path / "data")
        with pytest.raises(DatasetError) as remote:
            discover("memory://dsaudit-empty/data/")
    finally:
        fs.rm("/dsaudit-empty", recursive=True)
    expected = str(local.value).replace(str(tmp_path / "data"), "memory://dsaudit-empty/data")
    assert str(remote.value) == expected and "were taken as split folders" in expected
