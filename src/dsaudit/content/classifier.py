"""The domain classifier's model (DSA411) in numpy: stratified folds and an L2-penalised logistic
regression on standardised inputs, without importing scikit-learn.

Why not scikit-learn: importing its model selection and linear models costs 0.8-1.8 s of a scan,
more than the classifier's whole cross-validation on 6,000 images (about 0.3 s), and DSA411 was the
only part of a scan that imported it. What is computed is what the scikit-learn pipeline computed:

- ``stratified_folds`` gives the folds of ``StratifiedKFold(n_splits, shuffle=True,
  random_state=seed)`` (the same round-robin allocation and the same RandomState shuffles);
- ``fit_logistic`` minimises the objective of ``make_pipeline(StandardScaler(),
  LogisticRegression(C=...))``: C x the summed log-loss + ||w||^2 / 2, intercept not penalised, on
  inputs standardised with the fold's mean and standard deviation. It is strictly convex, so
  Newton's method (with backtracking) reaches the same minimum, to a tighter tolerance than
  scikit-learn's lbfgs default; scores agree to about 1e-4 and the ranks (the AUC) with them.

tests/test_drift_labels.py compares both with scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEWTON_STEPS = 50
TOLERANCE = 1e-10   # on the largest gradient entry of the objective (C x summed loss + penalty)


def stratified_folds(y: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """The test fold (0..n_splits-1) of each row, as StratifiedKFold(shuffle=True) assigns them."""
    y = np.asarray(y)
    _, first, inverse = np.unique(y, return_index=True, return_inverse=True)
    _, perm = np.unique(first, return_inverse=True)   # classes numbered by first appearance
    encoded = perm[inverse]
    n_classes = len(first)
    ordered = np.sort(encoded)
    allocation = np.asarray([np.bincount(ordered[i::n_splits], minlength=n_classes) for i in range(n_splits)])
    rng = np.random.RandomState(seed)
    folds = np.empty(len(y), dtype=np.int64)
    for c in range(n_classes):
        of_class = np.arange(n_splits).repeat(allocation[:, c])
        rng.shuffle(of_class)
        folds[encoded == c] = of_class
    return folds


@dataclass(frozen=True)
class Logistic:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def decision(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.coef + self.intercept


def _objective(z: np.ndarray, y: np.ndarray, w: np.ndarray, c: float) -> float:
    s = z @ w
    return float(c * (np.logaddexp(0.0, s) - y * s).sum() + 0.5 * (w[:-1] @ w[:-1]))


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float) -> Logistic:
    """L2-penalised logistic regression of y (0/1) on x standardised over these rows (see the module doc)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mean = x.mean(axis=0)
    sd = x.std(axis=0)
    scale = np.where(sd > 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0), sd, 1.0)
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    penalised = np.ones(z.shape[1])
    penalised[-1] = 0.0
    w = np.zeros(z.shape[1])
    current = _objective(z, y, w, c)
    for _ in range(NEWTON_STEPS):
        p = 0.5 * (1.0 + np.tanh(0.5 * (z @ w)))    # the logistic function, without overflow
        grad = c * (z.T @ (p - y)) + penalised * w
        if np.abs(grad).max() <= TOLERANCE * max(1.0, c * len(y)):
            break
        hess = c * (z.T * (p * (1.0 - p))) @ z + np.diag(penalised)
        hess[-1, -1] += 1e-12 * len(y)               # the intercept's row when every p is 0 or 1
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8:
            trial = _objective(z, y, w - t * step, c)
            if trial <= current:
                break
            t *= 0.5
        w, current = w - t * step, trial
    return Logistic(mean, scale, w[:-1], float(w[-1]))
