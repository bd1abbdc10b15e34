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


def test_the_extraction_time_is_read_beside_the_cached_arrays(tmp_path):
    import json

    import numpy as np

    from models.features import extraction_seconds

    for name, seconds in (("a", 12.5), ("b", 30.0)):
        np.save(tmp_path / f"{name}.npy", np.zeros(3, np.float16))
        (tmp_path / f"{name}.json").write_text(json.dumps({"images": 3, "seconds": seconds}))
    np.save(tmp_path / "c.npy", np.zeros(3, np.float16))  # no record: not counted
    mapped = [np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in "abc"]
    assert extraction_seconds([*mapped, np.zeros(2)]) == 42.5
