"""Scale benchmark: the index pass on the local engine and on a Dask LocalCluster, side by side, plus
the growth of the near-duplicate search, for the projection in docs/scale-out.md.

    python benchmarks/scale_dask.py generate --n 200000 --out /tmp/dsaudit-scale/data
    python benchmarks/scale_dask.py index --root /tmp/dsaudit-scale/data --workers 2
    python benchmarks/scale_dask.py search --sizes 10000,20000,40000,80000
    python -m moto.server -H 127.0.0.1 -p 5055 &   python benchmarks/scale_dask.py s3 --endpoint http://127.0.0.1:5055
    python benchmarks/scale_dask.py proxy --listen 5056 --target 5055 --delay-ms 20 &   (then --endpoint :5056)

`generate` writes N distinct 32x32 RGB PNGs (CIFAR-sized; smooth random patterns + noise, seed 0)
as train/val (80/20) x 10 classes. `index` times discovery and the index pass (stat, read, one
decode, SHA-256, features, assembly; no cache, no checks) with engine=local (a process pool of
--workers processes) and engine=dask (a LocalCluster of --workers single-threaded worker
processes, started before timing; its start-up is reported separately), and prints images per
second per core for each. `search` times the leakage check's own near-duplicate search
(similarity.matching.near_matches, default LeakageConfig: pHash self-join over 8 dihedral variants, k-NN of
val against train with shifted descriptors, verification) at several sizes and fits growth
exponents. `s3` and `proxy` measure reading from an S3 API (moto), with added request latency.
Output is JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np


def generate(n: int, out: Path, seed: int = 0, classes: int = 10) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    made = 0
    n_train = int(n * 0.8)
    for split in ("train", "val"):
        for c in range(classes):
            (out / split / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        split = "train" if i < n_train else "val"
        folder = out / split / f"c{i % classes:02d}"
        path = folder / f"img_{i:07d}.png"
        if path.exists():
            continue
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8)).astype(np.int16)
        img += rng.integers(-12, 13, img.shape, dtype=np.int16)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(path, compress_level=6)
        made += 1
        if made % 20000 == 0:
            print(f"  {made} written ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(json.dumps({"generated": made, "total": n, "seconds": round(time.perf_counter() - t0, 1),
                      "root": str(out)}))


def _config(engine: str, workers: int, scheduler: str = ""):
    from dsaudit.config import load_config

    return load_config(None, None, {"engine": engine, "scheduler": scheduler or None, "jobs": workers,
                                    "cache": False})[0]


def index(root: Path, workers: int, limit: int | None, engines: list[str]) -> None:
    import dataclasses

    from dsaudit.index.build import build_index
    from dsaudit.index.layout import discover

    t0 = time.perf_counter()
    layout = discover(root)
    t_discover = time.perf_counter() - t0
    if limit:
        layout = dataclasses.replace(layout, entries=layout.entries[:limit])
    n = len(layout.entries)
    print(json.dumps({"files": n, "discover_seconds": round(t_discover, 2)}), flush=True)
    results = {}
    for engine in engines:
        cluster = None
        scheduler = ""
        startup = 0.0
        if engine == "dask":
            import logging

            from distributed import LocalCluster

            t = time.perf_counter()
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            scheduler = cluster.scheduler_address
            startup = time.perf_counter() - t
        try:
            t = time.perf_counter()
            idx = build_index(layout, _config(engine, workers, scheduler))
            secs = time.perf_counter() - t
        finally:
            if cluster is not None:
                cluster.close()
        readable = int(idx.table["readable"].sum())
        feat_bytes = sum(a.nbytes for a in idx.features.values()) / max(1, n)
        row = {"engine": engine, "workers": workers, "files": n, "readable": readable,
               "seconds": round(secs, 2), "cluster_startup_seconds": round(startup, 2),
               "images_per_second": round(n / secs, 1), "images_per_second_per_core": round(n / secs / workers, 1),
               "timings": {k: round(v, 2) for k, v in idx.timings.items()},
               "feature_bytes_per_image": round(feat_bytes), "client_max_rss_mb":
                   round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        results[engine] = row
        print(json.dumps(row), flush=True)
        del idx
    if "local" in results and "dask" in results:
        print(json.dumps({"dask_over_local_throughput": round(
            results["dask"]["images_per_second"] / results["local"]["images_per_second"], 3)}))


def search(sizes: list[int], seed: int = 0) -> None:
    """The leakage check's own near-duplicate search (similarity.matching.near_matches with the default
    LeakageConfig: dihedral pHash self-join, k-NN of val against train with shifts, verification) on
    distinct synthetic 32x32 thumbnails (no planted duplicates); train 80%, val 20%."""
    from scipy.ndimage import gaussian_filter

    from dsaudit.similarity.matching import near_matches
    from dsaudit.similarity.views import Views
    from dsaudit.config import LeakageConfig
    from dsaudit.index import hashing

    cfg = LeakageConfig()
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        # smoothed noise: distinct images whose hash bits are close to independent (blocky synthetic
        # images share many pHash bits and would flood the verifier with false candidates)
        noise = gaussian_filter(rng.normal(0, 1, (n, 32, 32)).astype(np.float32), (0, 1.5, 1.5))
        thumbs = np.clip(128 + noise / noise.std() * 50, 0, 255).astype(np.uint8)
        t = time.perf_counter()
        feats = hashing.finalize({"thumb": thumbs})
        t_fin = time.perf_counter() - t
        split_code = (np.arange(n) >= int(n * 0.8)).astype(np.int64)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        found = near_matches(Views(thumbs, feats["phash"], feats["desc"]), split_code, cfg, ref_code=0, timings=timings)
        total = time.perf_counter() - t
        knn_pairs = (n - int(n * 0.8)) * int(n * 0.8) * (5 if cfg.knn_shifts else 1)
        row = {"n": n, "finalize_seconds": round(t_fin, 3), "search_seconds": round(total, 3),
               **{k: round(v, 3) for k, v in timings.items()}, "pairs_found": int(len(found)),
               "knn_ran": bool(cfg.knn > 0 and knn_pairs <= cfg.knn_max_pairs)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if len(rows) >= 2:
        ns = np.log([r["n"] for r in rows])
        for key in ("hash_search", "knn_search", "verify", "search_seconds"):
            if all(key in r for r in rows):
                slope = np.polyfit(ns, np.log([max(r[key], 1e-4) for r in rows]), 1)[0]
                print(json.dumps({f"{key}_growth_exponent": round(float(slope), 2)}))


def s3(root: Path, endpoint: str, n: int, workers: int) -> None:
    """Index the first N files of ROOT from an S3 API at ENDPOINT (e.g. moto on loopback): local
    engine, Dask, and Dask without the listing-stats/prefetch path (one HEAD + one GET per object,
    one after another)."""
    import logging

    import boto3
    from distributed import LocalCluster

    from dsaudit.index import dask_engine
    from dsaudit.index.build import build_index
    from dsaudit.index.layout import discover

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["FSSPEC_S3_ENDPOINT_URL"] = endpoint
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    import fsspec.config

    fsspec.config.set_conf_env(fsspec.config.conf)
    client = boto3.client("s3", endpoint_url=endpoint)
    bucket = "dsaudit-bench"
    client.create_bucket(Bucket=bucket)
    files = sorted(p for p in root.rglob("*") if p.is_file())[:n]
    t = time.perf_counter()
    for p in files:
        client.put_object(Bucket=bucket, Key=f"data/{p.relative_to(root).as_posix()}", Body=p.read_bytes())
    print(json.dumps({"uploaded": len(files), "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    url = f"s3://{bucket}/data/"
    t = time.perf_counter()
    layout = discover(url)
    print(json.dumps({"files": len(layout.entries), "list_seconds": round(time.perf_counter() - t, 2)}))
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    try:
        original = dask_engine._remote_stats
        for name, engine, stats in (("local", "local", True), ("dask", "dask", True),
                                    ("dask-no-prefetch", "dask", False)):
            dask_engine._remote_stats = original if stats else (lambda batch: None)
            t = time.perf_counter()
            idx = build_index(layout, _config(engine, workers, cluster.scheduler_address))
            secs = time.perf_counter() - t
            print(json.dumps({"engine": name, "files": len(layout.entries),
                              "readable": int(idx.table["readable"].sum()), "seconds": round(secs, 2),
                              "images_per_second": round(len(layout.entries) / secs, 1)}), flush=True)
        dask_engine._remote_stats = original
    finally:
        cluster.close()


def proxy(listen: int, target: int, delay_ms: float) -> None:
    """A TCP proxy on 127.0.0.1 that delays every chunk sent towards the server by DELAY_MS: a stand-in
    for an object store's request latency (tens of ms on S3) in front of moto on loopback."""
    import asyncio

    async def pipe(reader, writer, delay: float) -> None:
        try:
            while data := await reader.read(1 << 16):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(c_reader, c_writer) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(c_reader, s_writer, delay_ms / 1000), pipe(s_reader, c_writer, 0))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--n", type=int, default=200_000)
    g.add_argument("--out", type=Path, default=Path("/tmp/dsaudit-scale/data"))
    i = sub.add_parser("index")
    i.add_argument("--root", type=Path, default=Path("/tmp/dsaudit-scale/data"))
    i.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    i.add_argument("--limit", type=int, default=None, help="only the first N files")
    i.add_argument("--engines", default="local,dask")
    s = sub.add_parser("search")
    s.add_argument("--sizes", default="10000,20000,40000,80000")
    b = sub.add_parser("s3")
    b.add_argument("--root", type=Path, default=Path("/tmp/dsaudit-scale/data"))
    b.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:5055 (python -m moto.server -p 5055)")
    b.add_argument("--n", type=int, default=2000)
    b.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    x = sub.add_parser("proxy")
    x.add_argument("--listen", type=int, required=True)
    x.add_argument("--target", type=int, required=True)
    x.add_argument("--delay-ms", type=float, default=20.0)
    args = ap.parse_args()
    if args.cmd == "generate":
        generate(args.n, args.out)
    elif args.cmd == "index":
        index(args.root, args.workers, args.limit, args.engines.split(","))
    elif args.cmd == "proxy":
        proxy(args.listen, args.target, args.delay_ms)
    elif args.cmd == "s3":
        s3(args.root, args.endpoint, args.n, args.workers)
    else:
        search([int(x) for x in args.sizes.split(",")])


if __name__ == "__main__":
    main()
