"""The feature cache's names: a trunk with other weights never reuses another trunk's features."""

import keras
import numpy as np

from models.features import ViewSpec, cache_name, trunk_digest
from models.split import Entry


def test_a_cache_name_changes_with_the_trunks_weights_and_nothing_else_does():
    trunk = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    entries = [Entry("battery/a.jpg", "battery", "train"), Entry("paper/b.jpg", "paper", "train")]
    spec = ViewSpec("train", "belt", 100, 0)
    before = trunk_digest(trunk)
    assert trunk_digest(trunk) == before and cache_name(entries, spec, before) == cache_name(entries, spec, before)
    kernel, bias = trunk.get_weights()
    trunk.set_weights([kernel + np.float32(1e-3), bias])  # a tuned trunk, or weights dequantized from int8
    after = trunk_digest(trunk)
    assert after != before and cache_name(entries, spec, after) != cache_name(entries, spec, before)
    assert cache_name(entries, ViewSpec("train", "belt", 101, 0), before) != cache_name(entries, spec, before)
