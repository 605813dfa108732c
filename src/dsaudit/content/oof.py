"""Out-of-fold class probabilities from the probe CNN, for confident learning (DSA431).

K models (K = ``FOLDS``) of the probe architecture (dsaudit.probe.model) are trained in lockstep,
each on all folds but one, and each predicts the fold it did not see: every image gets a predicted
probability from a model that never trained on it, which is what cleanlab's confident learning
needs. TensorFlow is imported only here and only when this runs (probe.mode = on).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

FOLDS = 2
SIZE = 32          # input side: the probe's small input; label noise shows at this size already
MIN_PER_CLASS = 10


def out_of_fold(paths: list[str], labels: np.ndarray, n_classes: int, budget: float, seed: int,
                jobs: int | None, max_epochs: int = 20) -> dict[str, Any]:
    """{"probabilities": (n, C) float32 (rows of images that failed to load are nan), "epochs",
    "seconds", "accuracy"} within `budget` seconds of wall time (loading included)."""
    from dsaudit.probe.model import batch_size_for, calibrate, load_images, train_lockstep

    started = time.monotonic()
    x, ok = load_images(paths, SIZE, jobs)
    n = len(paths)
    rng = np.random.default_rng(seed)
    usable = np.flatnonzero(ok)
    fold = np.full(n, -1)
    fold[usable] = rng.permutation(len(usable)) % FOLDS
    # lockstep training needs training sets of equal size: each drops a few images at random
    train_sets = [np.flatnonzero((fold >= 0) & (fold != k)) for k in range(FOLDS)]
    size = min(len(t) for t in train_sets)
    train_sets = [np.sort(rng.choice(t, size, replace=False)) for t in train_sets]
    held = [np.flatnonzero(fold == k) for k in range(FOLDS)]
    # plan the epochs to fit the budget, so that the cosine schedule reaches zero at the end: a run
    # cut short by the deadline keeps a high learning rate and predicts much worse (CIFAR-10, 5,000
    # images: 5 of 20 planned epochs gave 35% out-of-fold accuracy)
    pilot = train_sets[0][:512]
    cal = calibrate(x[pilot], labels[pilot], n_classes, seed, jobs, batch=batch_size_for(size))
    left = budget - (time.monotonic() - started)
    epoch = FOLDS * size * cal["train_per_sample"] * 1.15 + 1e-9
    spare = left - FOLDS * cal["overhead"] - n * cal["eval_per_sample"] * FOLDS
    epochs = int(max(1, min(max_epochs, spare // epoch)))
    runs = train_lockstep([(x[t], labels[t]) for t in train_sets], [x[h] for h in held], n_classes,
                          epochs=epochs, seed=seed, deadline=started + 0.95 * budget,
                          hard_deadline=started + budget, jobs=jobs, epoch_estimate=epoch)
    probs = np.full((n, n_classes), np.nan, dtype=np.float32)
    for k, run in enumerate(runs):
        probs[held[k]] = run.probabilities[k]
    done = np.isfinite(probs[:, 0])
    acc = float((probs[done].argmax(axis=1) == labels[done]).mean()) if done.any() else float("nan")
    return {"probabilities": probs, "epochs": int(runs[0].epochs_done), "planned_epochs": int(epochs),
            "seconds": round(time.monotonic() - started, 2), "budget_left_at_training": round(left, 2),
            "accuracy": acc, "folds": FOLDS, "input_size": SIZE}
