"""The pasted class weights work in a real Keras fit: Keras numbers the folders as the dict does, and
the loss `fit` reports is the weighted one (a dict keyed by class name would change nothing)."""

from __future__ import annotations

import numpy as np
import pytest

from dsaudit.config import AuditConfig, ProbeConfig
from dsaudit.pipeline import scan
from imagery import make_split_dataset

pytestmark = pytest.mark.slow


def test_pasted_class_weight_dict_is_applied_by_keras_fit(tmp_path):
    tf = pytest.importorskip("tensorflow")
    make_split_dataset(tmp_path, {"train": {"PNEUMONIA": 12, "NORMAL": 6}}, size=16)
    result = scan(tmp_path, AuditConfig(cache=False, jobs=1, select=("DSA101",), probe=ProbeConfig(mode="off")))
    [finding] = [f for f in result.findings if f.check_id == "DSA101"]
    namespace: dict = {}
    exec(finding.evidence["snippet"].splitlines()[1], namespace)  # the line a user pastes
    class_weight = namespace["class_weight"]
    assert class_weight == {0: 1.5, 1: 0.75}

    ds = tf.keras.utils.image_dataset_from_directory(tmp_path / "train", image_size=(16, 16), batch_size=18,
                                                     shuffle=False, seed=0)
    assert ds.class_names == ["NORMAL", "PNEUMONIA"]  # index i of the dict is Keras' class i
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((16, 16, 3)), tf.keras.layers.Rescaling(1 / 255),
                                 tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)])
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=tf.keras.optimizers.SGD(learning_rate=0.0), loss=loss)  # lr 0: weights stay put
    images, labels = next(iter(ds))
    per_sample = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")(
        labels, model(images)).numpy()
    labels = labels.numpy()
    weighted = float(np.sum(per_sample * np.array([class_weight[int(y)] for y in labels])) / len(labels))
    history = model.fit(ds, epochs=1, class_weight=class_weight, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(weighted, rel=1e-4)
    assert abs(weighted - float(per_sample.mean())) > 1e-3  # and it is not the unweighted loss
