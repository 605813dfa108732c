"""Verification of a real scan's candidate pairs, replayed: time a change to similarity/verify.py and
check that it confirms the same pairs, without running the whole scan again.

    python benchmarks/verify_replay.py capture ROOT pairs.npz   # one scan of ROOT (say, the tree
                                                               # benchmarks/scan_speed.py writes)
    python benchmarks/verify_replay.py replay pairs.npz [--others 3000] [--seed 0] [--threads N]
    python benchmarks/verify_replay.py replay pairs.npz --sample 6000   # time a random sample
    python benchmarks/verify_replay.py bounds pairs.npz   # what a per-query bound would save and lose

`capture` scans ROOT (every check but the probe, no record cache) and saves what
`matching.near_matches` handed to `verify.verify_pairs` (the thumbnails and inner views, every
candidate pair with its orientation, turn, smooth-image boost and the thresholds) together with
what the verification of the code at hand returned. The 60,000-photo tree of scan_speed.py gives
468,872 candidates (their verification took 395 s in the scan of main 6f0b7d8 at load 2-3).

`replay` verifies again, with the code at hand, every pair the capture confirmed (under the
acceptance rule of near_matches: the stage's bar plus the boost, the isotropy rule, pixel-close
pairs) plus `--others` unconfirmed candidates drawn with `--seed` (0: all of them), and prints the
time, the confirmed pairs lost and gained (each listed with its similarity and stage before and
after) and the largest change of similarity among pairs confirmed by both. A pair's result does not
depend on the other pairs (tests/test_leakage_fastpaths.py), so a subset replays exactly what the
whole would give for it. `--sample N` replays N candidates drawn from all of them instead (what a
time per pair of the whole verification means; run it for both versions of the code, one after
the other, to compare them). Run it on a quiet machine when quoting the time; the pair lists do not
depend on the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "src"))   # after PYTHONPATH: the code under test may be elsewhere


def capture(root: Path, out: Path) -> None:
    import tempfile

    from dsaudit.config import AuditConfig, ProbeConfig
    from dsaudit.pipeline import scan
    from dsaudit.similarity import matching

    real = matching.verify_pairs

    def keep(thumbs, a, b, v, **kw):
        t = time.perf_counter()
        ver = real(thumbs, a, b, v, **kw)
        print(f"verification: {time.perf_counter() - t:.1f} s for {len(a):,} candidates", flush=True)
        np.savez(out, thumbs=thumbs, a=a, b=b, v=v, boost=kw["boost"], turn=kw["turn"], turned=kw["turned"],
                 threshold=kw["threshold"], search_threshold=kw["search_threshold"],
                 min_isotropy=kw["min_isotropy"], **{"out_" + k: x for k, x in dataclasses.asdict(ver).items()})
        return ver

    matching.verify_pairs = keep
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DSAUDIT_CACHE_DIR"] = tmp
        cfg = AuditConfig(jobs=2, probe=dataclasses.replace(ProbeConfig(), mode="off"), select=("DSA201",))
        scan(root, cfg)
    print(f"candidates and their verification written to {out}")


def accepted(ver: dict, boost: np.ndarray, turned: np.ndarray | None = None) -> np.ndarray:
    """near_matches' acceptance rule on verify_pairs' output (fields as in verify.Verified);
    `turned`: the pairs of the frame search (their own isotropy rule)."""
    from dsaudit.config import LeakageConfig
    from dsaudit.similarity.matching import CLOSE_RATIO, CLOSE_RMS, FRAME_MIN_ISOTROPY

    cfg = LeakageConfig()
    need = np.where(ver["stage"] >= 2, max(cfg.search_threshold, cfg.verify_threshold), cfg.verify_threshold) + boost
    need = np.where((ver["stage"] >= 1) & (ver["isotropy"] < cfg.min_isotropy), np.inf, need)
    if turned is not None:
        need = np.where(turned & (ver["isotropy"] < FRAME_MIN_ISOTROPY), np.inf, need)
    close = (ver["rms"] <= CLOSE_RMS) & (ver["rms"] <= CLOSE_RATIO * ver["contrast"])
    return (ver["similarity"] >= need) | close


def replay(path: Path, others: int, seed: int, sample: int = 0) -> None:
    from dsaudit.similarity import verify

    c = np.load(path)
    before = {k[4:]: c[k] for k in c.files if k.startswith("out_")}
    ok_before = accepted(before, c["boost"], c["turned"])
    unconfirmed = np.nonzero(~ok_before)[0]
    if sample:
        sel = np.sort(np.random.default_rng(seed).choice(len(ok_before), min(sample, len(ok_before)), replace=False))
    elif others:
        drawn = np.random.default_rng(seed).choice(unconfirmed, min(others, len(unconfirmed)), replace=False)
        sel = np.sort(np.concatenate([np.nonzero(ok_before)[0], drawn]))
    else:
        sel = np.arange(len(ok_before))
    print(f"captured: {len(ok_before):,} candidates, {int(ok_before.sum()):,} confirmed; "
          f"replaying {len(sel):,} ({int(ok_before[sel].sum()):,} confirmed, {int((~ok_before[sel]).sum()):,} not)")
    t, cpu = time.perf_counter(), time.process_time()
    ver = verify.verify_pairs(c["thumbs"], c["a"][sel], c["b"][sel], c["v"][sel], threshold=float(c["threshold"]),
                              search_threshold=float(c["search_threshold"]), boost=c["boost"][sel],
                              min_isotropy=float(c["min_isotropy"]), turn=c["turn"][sel], turned=c["turned"][sel])
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    after = dataclasses.asdict(ver)
    ok, ob = accepted(after, c["boost"][sel], c["turned"][sel]), ok_before[sel]
    both = ok & ob
    drift = float(np.abs(after["similarity"][both] - before["similarity"][sel][both]).max()) if both.any() else 0.0
    print(f"verification: {seconds:.1f} s ({seconds / len(sel) * 1e3:.3f} ms a pair, {verify.workers()} threads, "
          f"{cpu:.1f} s of CPU); "
          f"confirmed {int(ok.sum()):,} of {int(ob.sum()):,} before: lost {int((ob & ~ok).sum())}, "
          f"gained {int((ok & ~ob).sum())}; largest similarity change among pairs confirmed by both {drift:.2g}")
    for name, rows in (("lost", np.nonzero(ob & ~ok)[0]), ("gained", np.nonzero(ok & ~ob)[0])):
        for j in rows[:50]:
            i = sel[j]
            print(f"  {name}: candidate {i} (a {c['a'][i]}, b {c['b'][i]}, turned {bool(c['turned'][i])}): "
                  f"similarity {before['similarity'][i]:.4f} stage {before['stage'][i]} -> "
                  f"{after['similarity'][j]:.4f} stage {after['stage'][j]}")


def bounds(path: Path) -> None:
    """What a per-query bound on the costly stages (the zoom/rotation search and the fits) would
    save and lose on the captured candidates: (1) skipping pairs whose images are already joined
    by the pairs confirmed without the search (a duplicate cluster needs only a spanning set of
    pairs), and (2) each image's best m candidates by the shift stage's score going on."""
    import pandas as pd
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from dsaudit.similarity import verify

    c = np.load(path)
    before = {k[4:]: c[k] for k in c.files if k.startswith("out_")}
    ok = accepted(before, c["boost"], c["turned"])
    a, b, stage, n = c["a"], c["b"], before["stage"], len(c["thumbs"])

    def components(mask: np.ndarray) -> np.ndarray:
        graph = coo_matrix((np.ones(int(mask.sum())), (a[mask], b[mask])), shape=(n, n))
        return connected_components(graph, directed=False)[1]

    costly = stage >= 2
    cheap, final = components(ok & (stage < 2)), components(ok)
    print(f"{len(a):,} candidates, {int(ok.sum()):,} confirmed; {int(costly.sum()):,} reached the search/fits "
          f"({int((costly & ok).sum()):,} confirmed there)")
    print(f"  joined already by pairs confirmed without the search: {int((costly & (cheap[a] == cheap[b])).sum()):,}; "
          f"inside one final group at all: {int((costly & (final[a] == final[b])).sum()):,}")
    # the shift stage's score of every candidate: the cascade without the search and the fits
    shift = verify.verify_pairs(c["thumbs"], a, b, c["v"], threshold=float(c["threshold"]),
                                search_threshold=float(c["search_threshold"]), boost=c["boost"],
                                min_isotropy=float(c["min_isotropy"]), turn=c["turn"], turned=c["turned"],
                                zooms=(1.0,), angles=(), refine_floor=9.0, turn_gate=None).similarity
    df = pd.DataFrame({"a": a, "b": b, "score": shift, "ok": ok})[costly]
    rank = np.minimum(df.groupby("a")["score"].rank(ascending=False, method="first"),
                      df.groupby("b")["score"].rank(ascending=False, method="first"))
    for m in (1, 2, 3, 4, 6, 8):
        keep = rank <= m
        print(f"  best {m} per image: {keep.mean():.1%} of the costly candidates kept, "
              f"{int((df.ok & ~keep).sum())} confirmed pairs lost")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    cap = sub.add_parser("capture", help="scan ROOT once and save the candidates and their verification")
    cap.add_argument("root", type=Path)
    cap.add_argument("out", type=Path)
    rep = sub.add_parser("replay", help="verify the captured candidates again with the code at hand")
    rep.add_argument("capture", type=Path)
    rep.add_argument("--others", type=int, default=3000, help="unconfirmed candidates to replay (0: all)")
    rep.add_argument("--sample", type=int, default=0, help="replay this many candidates drawn from all instead")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--threads", type=int, default=0, help="verification threads (DSAUDIT_THREADS; 0: all cores)")
    bnd = sub.add_parser("bounds", help="what a per-query bound on the costly stages would save and lose")
    bnd.add_argument("capture", type=Path)
    args = ap.parse_args()
    if args.cmd == "capture":
        if not args.root.is_dir():
            print(f"no such folder: {args.root}", file=sys.stderr)
            raise SystemExit(2)
        capture(args.root, args.out)
    else:
        if not args.capture.is_file():
            print(f"no such capture: {args.capture}", file=sys.stderr)
            raise SystemExit(2)
        if args.cmd == "bounds":
            bounds(args.capture)
            return
        if args.threads:
            os.environ["DSAUDIT_THREADS"] = str(args.threads)
        replay(args.capture, args.others, args.seed, args.sample)


if __name__ == "__main__":
    main()
