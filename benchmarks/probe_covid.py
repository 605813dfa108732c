"""Group leakage on COVID-CT, measured with the probe CNN (issue 5).

For each seed:
  1. random per-image split (stratified 80/20): train the probe, accuracy on the held-out images;
  2. group-aware split (StratifiedGroupKFold, 5 folds, first fold held out; groups from the `%`
     prefix rule): same probe, same epochs;
  3. inside the random split, the counterfactual of DSA904: run A trains with the training images
     of the held-out images' groups, run B with each replaced by another image of its class
     (same size, seed and schedule); inflation = A - B on the held-out images whose group leaked.

Run:  python benchmarks/probe_covid.py [--seeds 0 1 2 3 4] [--epochs 20] [--size 128]
                                      [--data ../shared/datasets/covid-ct] [--json out.json]
Results go to stdout as a Markdown table (copied into docs/probe.md) and optionally JSON.
Nothing is written inside the dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "datasets" / "covid-ct"
GROUP_RE = re.compile(r"^(?P<g>.+)%\d+\.[^.]+$")
EXTS = {".png", ".jpg", ".jpeg"}


def load_table(root: Path) -> pd.DataFrame:
    from PIL import Image

    rows = []
    for label in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for f in sorted((root / label).iterdir()):
            if f.suffix.lower() not in EXTS:
                continue
            m = GROUP_RE.match(f.name)
            group = f"{label}/{m.group('g')}" if m else f"{label}/{f.name}"
            with Image.open(f) as im:
                w, h = im.size
            rows.append({"path": f"{label}/{f.name}", "abs_path": str(f), "split": "",
                         "label": label, "group": group, "kind": "image", "readable": True,
                         "bomb": False, "width": w, "height": h})
    return pd.DataFrame(rows)


def splits(table: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    y = table["label"].to_numpy()
    idx = np.arange(len(table))
    tr, va = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
    sgkf = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    gtr, gva = next(sgkf.split(idx, y, groups=table["group"].to_numpy()))
    return {"random": (np.sort(tr), np.sort(va)), "grouped": (gtr, gva)}


def wilson(k: int, n: int) -> tuple[float, float]:
    from dsaudit.probe.design import wilson_interval

    return wilson_interval(k, n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-counterfactual", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (args.data / "CT_COVID").is_dir():
        print(f"COVID-CT not found at {args.data}", file=sys.stderr)
        return 2

    from dsaudit.probe import design as D
    from dsaudit.probe.model import load_images, train_and_predict
    from dsaudit.probe.runner import ProbeSettings, run_probe

    table = load_table(args.data)
    classes = sorted(table["label"].unique())
    y_all = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    groups = table["group"].to_numpy()
    t = time.monotonic()
    x_all, ok = load_images(table["abs_path"].tolist(), args.size, args.jobs)
    load_s = time.monotonic() - t
    print(f"{len(table)} images, {len(set(groups))} groups "
          f"({int(sum(pd.Series(groups).value_counts() > 1))} with 2+ images), "
          f"decoded at {args.size} px in {load_s:.1f} s; {int((~ok).sum())} failed", flush=True)

    rows = []
    for seed in args.seeds:
        row: dict = {"seed": seed}
        for kind, (tr, va) in splits(table, seed).items():
            r = train_and_predict(x_all[tr], y_all[tr], [x_all[va]], len(classes), args.epochs,
                                  seed, jobs=args.jobs)
            correct = r.predictions[0] == y_all[va]
            shared = np.isin(groups[va], groups[tr])
            row[kind] = {"n_train": int(len(tr)), "n_val": int(len(va)),
                         "accuracy": float(correct.mean()),
                         "interval": list(wilson(int(correct.sum()), len(va))),
                         "val_with_group_in_train": int(shared.sum()),
                         "seconds": round(r.seconds, 1)}
            if kind == "random":
                row[kind]["naive_acc_group_in_train"] = float(correct[shared].mean()) if shared.any() else None
                row[kind]["naive_acc_group_not_in_train"] = float(correct[~shared].mean()) if (~shared).any() else None
            print(f"seed {seed} {kind}: acc {correct.mean():.3f} on {len(va)} "
                  f"({shared.sum()} with group in train), {r.seconds:.1f} s", flush=True)
        if not args.no_counterfactual:
            tr, va = splits(table, seed)["random"]
            t2 = table.copy()
            t2.loc[t2.index[tr], "split"] = "train"
            t2.loc[t2.index[va], "split"] = "val"
            sets = D.leak_sets_from_groups(t2)
            res = run_probe(t2, sets, ProbeSettings(budget_seconds=600, seed=seed, jobs=args.jobs,
                                                    max_epochs=args.epochs))
            inf = res.get("inflation") or {}
            row["counterfactual"] = {k: res.get(k) for k in ("inflation", "design", "runs", "context",
                                                              "cuts", "input_size", "elapsed_seconds")}
            print(f"seed {seed} counterfactual: inflation {inf.get('inflation')} "
                  f"interval {inf.get('interval')} p {inf.get('p_value')} "
                  f"n {inf.get('n')} in {res.get('elapsed_seconds')} s", flush=True)
        rows.append(row)

    rnd = np.array([r["random"]["accuracy"] for r in rows])
    grp = np.array([r["grouped"]["accuracy"] for r in rows])
    diff = rnd - grp
    print()
    print("| seed | random split acc (95% CI) | grouped split acc (95% CI) | random - grouped | "
          "DSA904 inflation (95% CI), p, n leaked |")
    print("|---|---|---|---|---|")
    for r in rows:
        a, g = r["random"], r["grouped"]
        cf = (r.get("counterfactual") or {}).get("inflation") or {}
        cf_txt = (f"{100 * cf['inflation']:+.1f} ({100 * cf['interval'][0]:+.1f} to "
                  f"{100 * cf['interval'][1]:+.1f}), p={cf['p_value']:.2g}, n={cf['n']}"
                  if cf.get("inflation") is not None else "n/a")
        print(f"| {r['seed']} | {100 * a['accuracy']:.1f} ({100 * a['interval'][0]:.0f}-"
              f"{100 * a['interval'][1]:.0f}) | {100 * g['accuracy']:.1f} ({100 * g['interval'][0]:.0f}-"
              f"{100 * g['interval'][1]:.0f}) | {100 * (a['accuracy'] - g['accuracy']):+.1f} | {cf_txt} |")
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")  # noqa: E731
    print(f"| mean (sd) | {100 * rnd.mean():.1f} ({100 * sd(rnd):.1f}) | {100 * grp.mean():.1f} "
          f"({100 * sd(grp):.1f}) | {100 * diff.mean():+.1f} ({100 * sd(diff):.1f}) | |")
    if len(rows) > 1:
        from scipy import stats

        tt = stats.ttest_rel(rnd, grp)
        half = stats.t.ppf(0.975, len(diff) - 1) * sd(diff) / np.sqrt(len(diff))
        print(f"\npaired over seeds: random - grouped = {100 * diff.mean():+.1f} points, 95% CI "
              f"{100 * (diff.mean() - half):+.1f} to {100 * (diff.mean() + half):+.1f}, p = {tt.pvalue:.2g}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise SystemExit(main())
