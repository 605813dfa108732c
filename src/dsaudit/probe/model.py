"""The probe CNN: the only module of dsaudit that imports TensorFlow, and only inside functions.

Trial-tested defaults (see docs/probe.md): images read and decoded in parallel with ``tf.data``,
converted to RGB and resized (32 px for small images; 128 px with a stride-2 first convolution for
larger ones); three conv blocks 32-64-128 with BatchNorm momentum 0.9 (Keras' 0.99 wrecks
validation accuracy in short runs), global average pooling, softmax; Adam 1e-3 with cosine decay
to zero; batch 256 (smaller for tiny subsamples so that an epoch has several steps);
``set_random_seed`` plus op determinism for bit-identical reruns.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

SMALL_SIZE = 32
LARGE_SIZE = 128
MAX_BATCH = 256


@contextlib.contextmanager
def _quiet_native_stderr():
    """Send file descriptor 2 to /dev/null while TensorFlow's native libraries load, so a CPU
    machine's scan is not followed by screens of CUDA and oneDNN notices. Python-level errors
    still raise normally; only the native start-up chatter is dropped."""
    if os.environ.get("DSAUDIT_TF_VERBOSE"):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tf(threads: int | None = None):
    """Import TensorFlow quietly (no CUDA probing on CPU machines, no info logs)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    with _quiet_native_stderr():  # the C++ runtime logs before its log level is read
        import tensorflow as tf  # noqa: PLC0415 - the one lazy TensorFlow import of dsaudit

    if threads:
        try:  # only possible before the runtime starts; later calls keep the first setting
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
        except RuntimeError:
            pass
    try:
        tf.get_logger().setLevel("ERROR")
    except Exception:  # pragma: no cover - logger API differences
        pass
    return tf


def batch_size_for(n: int) -> int:
    """256 for real subsamples; a power of two giving about 16 steps per epoch for tiny ones."""
    b = 16
    while b * 2 <= n / 16 and b * 2 <= MAX_BATCH:
        b *= 2
    return b


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def _pil_load(source, size: int) -> np.ndarray | None:
    """Decode a path or bytes with Pillow (fallback for what tf.io cannot decode)."""
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im.draft("RGB", (size * 2, size * 2))
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except Exception:
        return None


def _remote_load(path: str, size: int) -> np.ndarray | None:
    try:
        from dsaudit.index import io as dio

        return _pil_load(dio.read_bytes(path), size)
    except Exception:
        return None


def load_images(paths: Sequence[str], size: int, jobs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode `paths` to an (n, size, size, 3) uint8 array with tf.data (parallel read + decode).

    Returns (images, ok): files TensorFlow cannot decode are retried with Pillow; remote URLs
    (s3://, ...) are fetched through dsaudit's read-only file access; rows that fail stay zero
    with ok False."""
    from dsaudit.index import io as dio

    tf = import_tf(jobs)
    n = len(paths)
    out = np.zeros((n, size, size, 3), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return out, ok
    local = [i for i, p in enumerate(paths) if not dio.is_remote(p)]
    remote = [i for i, p in enumerate(paths) if dio.is_remote(p)]

    def decode(i, path):
        data = tf.io.read_file(path)
        img = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        img = tf.image.resize(img, [size, size], antialias=True)
        img = tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)
        return i, img

    if local:
        raw_paths = [os.fsencode(dio.local_path(paths[i])) for i in local]
        ds = tf.data.Dataset.from_tensor_slices((np.array(local, dtype=np.int64), raw_paths))
        ds = ds.map(decode, num_parallel_calls=jobs or tf.data.AUTOTUNE, deterministic=True)
        ds = ds.ignore_errors().batch(128).prefetch(2)
        for idx, imgs in ds:
            idx = idx.numpy()
            out[idx] = imgs.numpy()
            ok[idx] = True
    if remote:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(4, 2 * (jobs or 2))) as pool:
            for i, img in zip(remote, pool.map(lambda i: _remote_load(paths[i], size), remote)):
                if img is not None:
                    out[i] = img
                    ok[i] = True
    for i in np.flatnonzero(~ok):
        if dio.is_remote(paths[i]):
            continue
        img = _pil_load(dio.local_path(paths[i]), size)
        if img is not None:
            out[i] = img
            ok[i] = True
    return out, ok


def resize_array(images: np.ndarray, size: int) -> np.ndarray:
    """Downsize already-loaded images (used when the budget cuts the input size)."""
    tf = import_tf()
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for s in range(0, len(images), 512):
        r = tf.image.resize(images[s:s + 512], [size, size], antialias=True)
        out[s:s + 512] = tf.cast(tf.clip_by_value(tf.round(r), 0.0, 255.0), tf.uint8).numpy()
    return out


# ---------------------------------------------------------------------------------------------
# model and training
# ---------------------------------------------------------------------------------------------
def build_model(num_classes: int, size: int):
    tf = import_tf()
    L = tf.keras.layers
    inp = L.Input((size, size, 3), name="image")
    x = L.Rescaling(1.0 / 255.0)(inp)
    for i, filters in enumerate((32, 64, 128)):
        stride = 2 if (i == 0 and size > SMALL_SIZE) else 1
        x = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        x = L.ReLU()(x)
        if i < 2:
            x = L.MaxPooling2D()(x)
    emb = L.GlobalAveragePooling2D(name="embedding")(x)
    out = L.Dense(num_classes, activation="softmax", name="probs")(emb)
    return tf.keras.Model(inp, out, name="dsaudit_probe")


def _dataset(tf, x: np.ndarray, y: np.ndarray | None, batch: int, seed: int | None):
    ds = tf.data.Dataset.from_tensor_slices((x, y) if y is not None else x)
    if seed is not None:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    cast = (lambda a, b: (tf.cast(a, tf.float32), b)) if y is not None else \
        (lambda a: tf.cast(a, tf.float32))
    return ds.batch(batch).map(cast).prefetch(2)


@dataclass
class RunResult:
    predictions: list[np.ndarray]      # predicted class per image of each evaluation set
    epochs_planned: int
    epochs_done: int
    stopped_by_budget: bool
    seconds: float
    train_accuracy: float | None
    batch_size: int
    train_size: int
    seed: int
    probabilities: list[np.ndarray] = field(default_factory=list)  # softmax per evaluation set (not in to_dict)

    def to_dict(self) -> dict[str, Any]:
        return {"train_size": self.train_size, "epochs_planned": self.epochs_planned,
                "epochs_done": self.epochs_done, "stopped_by_budget": self.stopped_by_budget,
                "seconds": round(self.seconds, 3), "train_accuracy": self.train_accuracy,
                "batch_size": self.batch_size, "seed": self.seed}


def _make_run(tf, num_classes: int, size: int, seed: int, planned_epochs: int, steps: int):
    """A fresh model (initial weights fixed by `seed`) and its Adam with cosine decay to zero."""
    tf.keras.utils.set_random_seed(int(seed))
    model = build_model(num_classes, size)
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        1e-3, decay_steps=max(1, planned_epochs * steps), alpha=0.0)
    return model, tf.keras.optimizers.Adam(schedule)


def train_lockstep(sets: Sequence[tuple[np.ndarray, np.ndarray]], evals: Sequence[np.ndarray],
                   num_classes: int, epochs: int, seed: int, deadline: float | None = None,
                   hard_deadline: float | None = None, planned_epochs: int | None = None,
                   jobs: int | None = None, epoch_estimate: float | None = None) -> list[RunResult]:
    """Train one probe per (x, y) training set, all in lockstep, and predict `evals` with each.

    Every model starts from the same weights (same seed) and sees its data in the same shuffled
    order; one compiled step updates all of them on batch i of their own set, so whatever the
    machine's load does, the runs always have completed the same number of steps. The cosine
    schedule spans `planned_epochs` (default `epochs`). Between epochs, training stops when the
    next epoch would end after `deadline`; within an epoch it stops at `hard_deadline`.
    All training sets must have the same size."""
    tf = import_tf(jobs)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass
    start = time.monotonic()
    n = len(sets[0][0])
    if any(len(x) != n for x, _ in sets):
        raise ValueError("lockstep runs need training sets of equal size")
    size = int(sets[0][0].shape[1])
    batch = batch_size_for(n)
    steps = int(np.ceil(n / batch))
    planned = int(planned_epochs or epochs)
    runs = [_make_run(tf, num_classes, size, seed, planned, steps) for _ in sets]
    tf.keras.utils.set_random_seed(int(seed))
    order_ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    order_ds = order_ds.batch(batch)
    xs = [tf.constant(x) for x, _ in sets]
    ys = [tf.constant(y.astype(np.int32)) for _, y in sets]
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(idx):
        correct = []
        for (model, opt), x, y in zip(runs, xs, ys):
            xb = tf.cast(tf.gather(x, idx), tf.float32)
            yb = tf.gather(y, idx)
            with tf.GradientTape() as tape:
                probs = model(xb, training=True)
                loss = loss_fn(yb, probs)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            pred = tf.argmax(probs, axis=1, output_type=tf.int32)
            correct.append(tf.reduce_sum(tf.cast(pred == yb, tf.int32)))
        return tf.stack(correct)

    done = 0
    cut = False
    partial = False
    epoch_times: list[float] = []
    accs = [None] * len(runs)
    for epoch in range(int(epochs)):
        t_epoch = time.monotonic()
        right = np.zeros(len(runs), dtype=np.int64)
        seen = 0
        for idx in order_ds:
            right += step(idx).numpy()
            seen += int(idx.shape[0])
            if hard_deadline is not None and time.monotonic() > hard_deadline:
                cut = partial = True
                break
        if partial:
            break
        done = epoch + 1
        accs = [float(r) / seen for r in right]
        epoch_times.append(time.monotonic() - t_epoch)
        # the first epoch includes graph tracing: judge it by the calibrated estimate
        if len(epoch_times) > 1:
            steady = min(epoch_times[1:][-2:])
        else:
            steady = epoch_estimate if epoch_estimate is not None else epoch_times[0]
        if deadline is not None and done < epochs and time.monotonic() + steady > deadline:
            cut = True
            break
    train_seconds = time.monotonic() - start
    results = []
    for k, ((model, _), (x, _)) in enumerate(zip(runs, sets)):
        t = time.monotonic()
        preds, probabilities = [], []
        for ev in evals:
            if len(ev) == 0:
                preds.append(np.zeros(0, dtype=int))
                probabilities.append(np.zeros((0, num_classes), dtype=np.float32))
                continue
            probs = model.predict(_dataset(tf, ev, None, 256, None), verbose=0)
            preds.append(np.argmax(probs, axis=1).astype(int))
            probabilities.append(np.asarray(probs, dtype=np.float32))
        results.append(RunResult(
            predictions=preds, epochs_planned=planned, epochs_done=done,
            stopped_by_budget=cut, seconds=train_seconds / len(runs) + time.monotonic() - t,
            train_accuracy=accs[k], batch_size=batch, train_size=int(len(x)), seed=int(seed),
            probabilities=probabilities))
    tf.keras.backend.clear_session()
    return results


def train_and_predict(x: np.ndarray, y: np.ndarray, evals: Sequence[np.ndarray], num_classes: int,
                      epochs: int, seed: int, deadline: float | None = None,
                      planned_epochs: int | None = None, jobs: int | None = None,
                      epoch_estimate: float | None = None) -> RunResult:
    """Train one probe from scratch and predict each evaluation set (see train_lockstep)."""
    return train_lockstep([(x, y)], evals, num_classes, epochs, seed, deadline=deadline,
                          hard_deadline=deadline, planned_epochs=planned_epochs, jobs=jobs,
                          epoch_estimate=epoch_estimate)[0]


def train_pair(xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray,
               evals: Sequence[np.ndarray], num_classes: int, epochs: int, seed: int,
               deadline: float | None = None, hard_deadline: float | None = None,
               jobs: int | None = None,
               epoch_estimate: float | None = None) -> tuple[RunResult, RunResult]:
    """Runs A and B in lockstep (same seed, same order, same schedule, same completed steps)."""
    a, b = train_lockstep([(xa, ya), (xb, yb)], evals, num_classes, epochs, seed,
                          deadline=deadline, hard_deadline=hard_deadline, jobs=jobs,
                          epoch_estimate=epoch_estimate)
    return a, b


def calibrate(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int,
              jobs: int | None = None, batch: int | None = None) -> dict[str, float]:
    """Seconds per training sample (steady state), per predicted sample, and per-run overhead
    (model build + graph tracing), measured on real images at this input size and at the batch
    size the planned run will use (the pilot images are repeated to fill a batch)."""
    tf = import_tf(jobs)
    tf.keras.utils.set_random_seed(int(seed))
    batch = int(batch or batch_size_for(len(x)))
    if len(x) < batch:
        reps = -(-batch // len(x))
        x = np.concatenate([x] * reps)[:batch]
        y = np.concatenate([y] * reps)[:batch]
    t0 = time.monotonic()
    model = build_model(num_classes, int(x.shape[1]))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy")
    xb = tf.cast(tf.constant(x[:batch]), tf.float32)
    yb = tf.constant(y[:batch].astype(np.int32))
    model.train_on_batch(xb, yb)                     # tracing
    overhead = time.monotonic() - t0
    t1 = time.monotonic()
    reps = 2
    for _ in range(reps):
        model.train_on_batch(xb, yb)
    per_train = (time.monotonic() - t1) / (reps * batch)
    t2 = time.monotonic()
    model.predict(xb[:1], verbose=0)                 # tracing and per-call cost
    eval_overhead = time.monotonic() - t2
    xe = tf.concat([xb] * max(1, 256 // batch), axis=0)
    model.predict(xe[:1], verbose=0)
    t2 = time.monotonic()
    model.predict(xe, verbose=0, batch_size=256)
    t3 = time.monotonic()
    model.predict(xe[:1], verbose=0)
    per_call = time.monotonic() - t3
    per_eval = max(0.0, (t3 - t2) - per_call) / int(xe.shape[0])
    tf.keras.backend.clear_session()
    return {"train_per_sample": per_train, "eval_per_sample": per_eval,
            "overhead": overhead, "eval_overhead": eval_overhead, "batch": batch}
