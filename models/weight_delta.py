"""A tuned model's change from its base, as float16 files small enough to carry back from a training machine.

The change of each weight (tuned − base, in the order of ``model.get_weights()``) is small, so float16 keeps it
to about 1e-3 of itself, where float16 weights would round the weights themselves; a ResNet-50's change takes
47 MiB, written as ``delta-NN.npz`` parts of at most ``max_part`` bytes (default 15 MiB). The base is rebuilt
where the change is applied (``models.from_tflite`` from the same int8 model), so only the change travels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PART = "delta-{:02d}.npz"
MAX_PART = 15 * 2**20


def save(tuned: list[np.ndarray], base: list[np.ndarray], folder: Path, max_part: int = MAX_PART) -> list[Path]:
    """Write tuned − base (float16) into parts under ``folder``; returns their paths."""
    if [w.shape for w in tuned] != [w.shape for w in base]:
        raise ValueError("the tuned model's weights do not match its base's")
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[dict[str, Any]] = [{}]  # Any: numpy types savez's keywords as its allow_pickle flag
    size = 0
    for index, (new, old) in enumerate(zip(tuned, base, strict=True)):
        change = (np.asarray(new, np.float32) - np.asarray(old, np.float32)).astype(np.float16)
        if parts[-1] and size + change.nbytes > max_part:
            parts.append({})
            size = 0
        parts[-1][f"w{index:04d}"] = change
        size += change.nbytes
    paths = [folder / PART.format(number) for number in range(len(parts))]
    for path, arrays in zip(paths, parts, strict=True):
        np.savez(path, **arrays)
    return paths


def apply(base: list[np.ndarray], folder: Path) -> list[np.ndarray]:
    """The base's weights plus the change saved under ``folder``."""
    change: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("delta-*.npz")):
        with np.load(path) as arrays:
            change.update({name: arrays[name] for name in arrays.files})
    if sorted(change) != [f"w{index:04d}" for index in range(len(base))]:
        raise ValueError(f"{folder}: {len(change)} changed weights for a base of {len(base)}")
    out = []
    for index, weight in enumerate(base):
        delta = change[f"w{index:04d}"]
        if delta.shape != weight.shape:
            raise ValueError(f"{folder}: weight {index} is {delta.shape}, the base's {weight.shape}")
        out.append(np.asarray(weight, np.float32) + delta.astype(np.float32))
    return out
