"""The probe CNN: the only module of dsaudit that imports TensorFlow, and only inside functions.

Trial-tested defaults (see docs/probe.md): images read and decoded in parallel with ``tf.data``,
converted to RGB and resized (32 px for small images; 128 px with a stride-2 first convolution for
larger ones); three conv blocks 32-64-128 with BatchNorm momentum 0.9 (Keras' 0.99 wrecks
validation accuracy in short runs), global average pooling, softmax; Adam 1e-3 with cosine decay
to zero; batch 256 (smaller for tiny subsamples so that an epoch has several steps);
``set_random_seed`` plus op determinism for bit-identical reruns.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

SMALL_SIZE = 32
LARGE_SIZE = 128
MAX_BATCH = 256


def import_tf(threads: int | None = None):
    """Import TensorFlow quietly (no CUDA probing on CPU machines, no info logs)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
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
def _pil_load(path: str, size: int) -> np.ndarray | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.draft("RGB", (size * 2, size * 2))
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except Exception:
        return None


def load_images(paths: Sequence[str], size: int, jobs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode `paths` to an (n, size, size, 3) uint8 array with tf.data (parallel read + decode).

    Returns (images, ok): files TensorFlow cannot decode are retried with Pillow; rows that
    fail both stay zero with ok False."""
    tf = import_tf(jobs)
    n = len(paths)
    out = np.zeros((n, size, size, 3), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return out, ok
    raw_paths = [os.fsencode(p) for p in paths]

    def decode(i, path):
        data = tf.io.read_file(path)
        img = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        img = tf.image.resize(img, [size, size], antialias=True)
        img = tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)
        return i, img

    ds = tf.data.Dataset.from_tensor_slices((np.arange(n, dtype=np.int64), raw_paths))
    ds = ds.map(decode, num_parallel_calls=jobs or tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors().batch(128).prefetch(2)
    for idx, imgs in ds:
        idx = idx.numpy()
        out[idx] = imgs.numpy()
        ok[idx] = True
    for i in np.flatnonzero(~ok):
        img = _pil_load(paths[i], size)
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

    def to_dict(self) -> dict[str, Any]:
        return {"train_size": self.train_size, "epochs_planned": self.epochs_planned,
                "epochs_done": self.epochs_done, "stopped_by_budget": self.stopped_by_budget,
                "seconds": round(self.seconds, 3), "train_accuracy": self.train_accuracy,
                "batch_size": self.batch_size, "seed": self.seed}


def train_and_predict(x: np.ndarray, y: np.ndarray, evals: Sequence[np.ndarray], num_classes: int,
                      epochs: int, seed: int, deadline: float | None = None,
                      planned_epochs: int | None = None, jobs: int | None = None) -> RunResult:
    """Train one probe from scratch and predict each evaluation set.

    The cosine schedule spans `planned_epochs` (default `epochs`), so a run told to stop at the
    epoch where an earlier, budget-cut run stopped follows exactly the same schedule. Training
    stops early (at the end of a batch) when `deadline` (time.monotonic()) passes, or at the end
    of an epoch when the next one would not finish in time."""
    tf = import_tf(jobs)
    start = time.monotonic()
    tf.keras.utils.set_random_seed(int(seed))
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass
    size = int(x.shape[1])
    batch = batch_size_for(len(x))
    steps = int(np.ceil(len(x) / batch))
    planned = int(planned_epochs or epochs)
    model = build_model(num_classes, size)
    schedule = tf.keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=max(1, planned * steps),
                                                         alpha=0.0)
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class Budget(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.done = 0
            self.cut = False
            self.epoch_start = time.monotonic()
            self.durations: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.monotonic()

        def on_train_batch_end(self, batch_i, logs=None):
            if deadline is not None and time.monotonic() > deadline:
                self.cut = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            now = time.monotonic()
            if not self.cut:
                self.done = epoch + 1
            self.durations.append(now - self.epoch_start)
            steady = min(self.durations[-2:]) if len(self.durations) > 1 else self.durations[-1]
            if deadline is not None and self.done < epochs and now + steady > deadline:
                self.cut = True
                self.model.stop_training = True

    cb = Budget()
    ds = _dataset(tf, x, y.astype(np.int32), batch, seed)
    hist = model.fit(ds, epochs=int(epochs), verbose=0, callbacks=[cb])
    acc = hist.history.get("accuracy") or [None]
    preds = []
    for ev in evals:
        if len(ev) == 0:
            preds.append(np.zeros(0, dtype=int))
            continue
        p = model.predict(_dataset(tf, ev, None, 256, None), verbose=0)
        preds.append(np.argmax(p, axis=1).astype(int))
    tf.keras.backend.clear_session()
    return RunResult(predictions=preds, epochs_planned=int(epochs), epochs_done=int(cb.done),
                     stopped_by_budget=bool(cb.cut), seconds=time.monotonic() - start,
                     train_accuracy=None if acc[-1] is None else float(acc[-1]),
                     batch_size=batch, train_size=int(len(x)), seed=int(seed))


def calibrate(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int,
              jobs: int | None = None) -> dict[str, float]:
    """Seconds per training sample (steady state), per predicted sample, and per-run overhead
    (model build + graph tracing), measured on a small real batch at this input size."""
    tf = import_tf(jobs)
    tf.keras.utils.set_random_seed(int(seed))
    n = len(x)
    batch = batch_size_for(max(n, 1)) if n < MAX_BATCH * 2 else MAX_BATCH
    batch = min(batch, n)
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
    model.predict(xb, verbose=0, batch_size=batch)
    t2 = time.monotonic()
    model.predict(xb, verbose=0, batch_size=batch)
    per_eval = (time.monotonic() - t2) / batch
    tf.keras.backend.clear_session()
    return {"train_per_sample": per_train, "eval_per_sample": per_eval,
            "overhead": overhead, "batch": batch}
