"""Scale benchmark: the index pass on the local engine and on a Dask LocalCluster, side by side, plus
the growth of the near-duplicate search, for the projection in docs/scale-out.md.

    python benchmarks/scale_dask.py generate --n 200000 --out /tmp/dsaudit-scale/data
    python benchmarks/scale_dask.py index --root /tmp/dsaudit-scale/data --workers 2
    python benchmarks/scale_dask.py search --sizes 10000,20000,40000,80000
    python benchmarks/scale_dask.py search-rates --root TREE --n 20000 --workers 2
    python benchmarks/scale_dask.py join-rates --queries 20000 --refs 80000 --versions 11 --workers 2
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
exponents. `search-rates` runs the search itself (similarity.matching.matches_with_views, default
settings) on N real images of a tree (e.g. photo_tree.py's CIFAR-10 tree; records cached, so a rerun
decodes nothing) with the local engine and with the Dask engine (similarity/sharded.py) on a
LocalCluster, times each bulk step (pHash join, k-NN joins, verification) and counts its work, and
prints the per-core rates and whether both engines found the same matches; `join-rates` does the same
for the k-NN and pHash joins alone on seeded synthetic vectors and hashes, at sizes the Dask engine
sends to the cluster. `s3` and `proxy`
measure reading from an S3 API (moto), with added request latency.
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


def _counting(base, tally: dict):
    """ops.SearchOps whose steps are `base`'s, timed and with their work counted: hash-join
    comparisons (query variants x references), k-NN comparisons (query versions x references) and
    verified pairs."""
    from dsaudit.similarity.ops import SearchOps

    def timed(name, fn, work):
        def run(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            row = tally.setdefault(name, {"seconds": 0.0, "work": 0.0, "calls": 0})
            row["seconds"] += time.perf_counter() - t
            row["work"] += work(*args)
            row["calls"] += 1
            return out
        return run

    def knn_work(q, r, *_):
        q = np.asarray(q)
        return float(q.shape[0] * q.shape[1] if q.ndim == 3 else len(q)) * len(r)

    return SearchOps(hash_join=timed("hash_join", base.hash_join, lambda qv, r, *_: float(qv.size) * len(r)),
                     knn_join=timed("knn_join", base.knn_join, knn_work),
                     verify=timed("verify", base.verify, lambda thumbs, a, *_: float(len(a))),
                     ivf_index=base.ivf_index, ivf_join=base.ivf_join)


def search_rates(root: Path, n: int, workers: int, seed: int = 0, engines: tuple[str, ...] = ("local", "dask")) -> None:
    """Per-core rates of the search's bulk steps on real images, the local engine (a thread pool of
    --workers threads) and a Dask LocalCluster of --workers single-threaded processes side by side
    (similarity/sharded.py), on the same views, and whether both found the same matches."""
    import dataclasses
    import logging

    from dsaudit.config import AuditConfig
    from dsaudit.index.build import build_index
    from dsaudit.index.layout import discover
    from dsaudit.similarity.duplicates import _split_ranks
    from dsaudit.similarity.matching import matches_with_views
    from dsaudit.similarity.neighbors import thread_limit
    from dsaudit.similarity.ops import SearchOps, using_ops
    from dsaudit.similarity.views import Views

    layout = discover(root)
    rng = np.random.default_rng(seed)
    if n < len(layout.entries):
        pick = np.sort(rng.choice(len(layout.entries), n, replace=False))
        layout = dataclasses.replace(layout, entries=[layout.entries[i] for i in pick])
    t = time.perf_counter()
    config = AuditConfig(jobs=workers)   # cached records: a second run of the same files decodes nothing
    index = build_index(layout, config)
    table = index.table.reset_index(drop=True)
    img_pos = np.nonzero(table["has_features"].to_numpy(bool))[0]
    order, rank = _split_ranks(index, table["split"].astype(str).to_numpy())
    views, codes = Views.of_index(index.features, img_pos), rank[img_pos]
    print(json.dumps({"images": int(len(img_pos)), "index_seconds": round(time.perf_counter() - t, 1),
                      "splits": {s: int((codes == c).sum()) for s, c in order.items()}}), flush=True)
    cfg = config.leakage
    found = {}
    for engine in engines:
        tally: dict = {}
        stages: dict = {}
        cluster = client = None
        try:
            if engine == "dask":
                from distributed import Client, LocalCluster

                from dsaudit.similarity.sharded import ClusterSearch

                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
                client = Client(cluster, set_as_default=False)
                base = ClusterSearch(client).ops()
            else:
                base = SearchOps()
            t = time.perf_counter()
            with thread_limit(workers), using_ops(_counting(base, tally)):
                found[engine] = matches_with_views(views, codes, cfg, ref_code=order.get("train"), timings=stages)
            total = time.perf_counter() - t
        finally:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        print(json.dumps({"engine": engine, "workers": workers, "search_seconds": round(total, 1),
                          "stages": {k: round(v, 2) for k, v in stages.items()},
                          "approximate": found[engine].attrs.get("approximate", {}),
                          "matches": int(len(found[engine]))}), flush=True)
        for step, row in tally.items():
            rate = round(row["work"] / row["seconds"] / workers, 1) if row["seconds"] else None
            print(json.dumps({"engine": engine, "step": step, "calls": row["calls"],
                              "seconds": round(row["seconds"], 2),
                              "work": row["work"], "per_core_per_second": rate}), flush=True)
    if len(found) == 2:
        a, b = found.values()
        print(json.dumps({"same_matches": bool(a.equals(b)), "matches": [int(len(a)), int(len(b))]}))


def join_rates(n_queries: int, n_refs: int, versions: int, workers: int, seed: int = 0) -> None:
    """The k-NN join and the pHash join alone, at a size the Dask engine sends to the cluster:
    `versions` x n_queries unit descriptors (64-d, seeded noise) against n_refs, k=8, and the
    8-variant hashes of n_queries images against n_refs identity hashes at radius 8; the local
    functions (a thread pool of --workers threads) against similarity/sharded.py on a LocalCluster
    of --workers single-threaded processes, with the answers compared."""
    import logging

    from distributed import Client, LocalCluster

    from dsaudit.similarity.neighbors import dihedral_join, knn_join, thread_limit
    from dsaudit.similarity.sharded import ClusterSearch

    rng = np.random.default_rng(seed)
    q = rng.normal(size=(versions, n_queries, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=2, keepdims=True)
    r = rng.normal(size=(n_refs, 64)).astype(np.float32)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    hq = rng.integers(0, 2 ** 63, size=(n_queries, 8), dtype=np.int64).astype(np.uint64)
    hr = rng.integers(0, 2 ** 63, size=n_refs, dtype=np.int64).astype(np.uint64)
    hr[: n_refs // 10] = hq[: n_refs // 10, 0] ^ np.uint64(5)   # some pairs within the radius
    out = {}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster, set_as_default=False)
    try:
        search = ClusterSearch(client, min_work={"hash_join": 0, "knn_join": 0})
        search.knn_join(q[:, :64], r[:4096], 8)   # warm the workers (imports) before timing
        for engine in ("local", "dask"):
            for step, work, run in (
                    ("knn_join", float(versions) * n_queries * n_refs,
                     lambda e: (knn_join if e == "local" else search.knn_join)(q, r, 8, min_sim=-1.0)),
                    ("hash_join", 8.0 * n_queries * n_refs,
                     lambda e: (dihedral_join if e == "local" else search.hash_join)(hq, hr, 8))):
                t = time.perf_counter()
                with thread_limit(workers):
                    out[(engine, step)] = run(engine)
                secs = time.perf_counter() - t
                print(json.dumps({"engine": engine, "step": step, "seconds": round(secs, 2), "work": work,
                                  "per_core_per_second": round(work / secs / workers, 1)}), flush=True)
    finally:
        client.close()
        cluster.close()
    for step in ("knn_join", "hash_join"):
        a, b = out[("local", step)], out[("dask", step)]
        print(json.dumps({"step": step, "same_answer": all(np.array_equal(x, y) for x, y in zip(a, b)),
                          "pairs": int(len(a[0]))}))


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
    sr = sub.add_parser("search-rates")
    sr.add_argument("--root", type=Path, required=True, help="an image tree (e.g. photo_tree.py's CIFAR-10 tree)")
    sr.add_argument("--n", type=int, default=20000, help="images drawn from it (seed 0)")
    sr.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    sr.add_argument("--engines", default="local,dask")
    jr = sub.add_parser("join-rates")
    jr.add_argument("--queries", type=int, default=20000)
    jr.add_argument("--refs", type=int, default=80000)
    jr.add_argument("--versions", type=int, default=11)
    jr.add_argument("--workers", type=int, default=os.cpu_count() or 1)
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
    elif args.cmd == "join-rates":
        join_rates(args.queries, args.refs, args.versions, args.workers)
    elif args.cmd == "search-rates":
        search_rates(args.root, args.n, args.workers, engines=tuple(args.engines.split(",")))
    else:
        search([int(x) for x in args.sizes.split(",")])


if __name__ == "__main__":
    main()
