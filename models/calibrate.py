"""Calibrate the shipped model's probabilities: fit one temperature on the validation split, write it to the card.

The recipe trains with label smoothing (0.1): the targets are 0.91 for the true class and 0.008 for each of the
other eleven, so the model is under-confident (its median top probability on the test photos is 0.93, where
96 % of its answers are right) and a wrong class keeps a floor near 0.01. An expected-cost
decision (``edge.decision``) needs probabilities that mean what they say, so the edge scales them by the
card's ``calibration.temperature`` T: ``softmax(log p / T)``. T is the value that minimises the negative
log-likelihood of the int8 model's outputs on the val split, photos and belt views together (the two views the
line sees), on a grid of 0.01. The card's seal (``integrity``) is not affected.

    python -m models.calibrate [--model models/garbage12_resnet50_int8.tflite]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.decision import calibrate
from edge.model_card import MAX_T, MIN_T, card_path
from models.evaluate import tflite_probabilities
from models.features import ViewSpec, evaluation_views
from models.split import dataset_arguments, read_manifest, select

logger = logging.getLogger("models.calibrate")
GRID = np.round(np.arange(MIN_T, 3.0 + 1e-9, 0.01), 2)  # temperatures tried


def nll(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (probabilities floored at 1e-12: int8 outputs hit 0)."""
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(truth)), truth], 1e-12, None))))


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """ECE: |confidence - accuracy| averaged over 10 confidence bins, weighted by their share of images."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return float(sum(np.mean(which == b) * abs(confidence[which == b].mean() - correct[which == b].mean())
                     for b in range(bins) if np.any(which == b)))


def fit_temperature(probabilities: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """The temperature of GRID with the lowest NLL, and the NLL and ECE before and after."""
    scores = [nll(calibrate(probabilities, float(t)), truth) for t in GRID]
    best = float(GRID[int(np.argmin(scores))])
    if best >= MAX_T:
        raise ValueError(f"no temperature up to {MAX_T} fits")
    after = calibrate(probabilities, best)
    return {"temperature": best,
            "nll": [round(nll(probabilities, truth), 4), round(nll(after, truth), 4)],
            "ece": [round(expected_calibration_error(probabilities, truth), 4),
                    round(expected_calibration_error(after, truth), 4)]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/garbage12_resnet50_int8.tflite"), help="int8 model")
    dataset_arguments(parser)
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: all cores)")
    parser.add_argument("--no-card", action="store_true", help="print the fit, do not write it into the card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    entries = select(read_manifest(args.manifest), "val")
    card = json.loads(card_path(args.model).read_text(encoding="utf-8"))
    labels = tuple(card["labels"])
    truth = np.array([labels.index(e.label) for e in entries])
    views: list[ViewSpec] = list(evaluation_views("val"))
    probabilities = np.concatenate([tflite_probabilities(args.model, args.data, entries, spec, args.threads)
                                    for spec in views])
    fit = fit_temperature(probabilities, np.tile(truth, len(views)))
    fit.update(split=f"{args.manifest.as_posix()}: val", images=len(probabilities),
               views=[spec.kind for spec in views], fitted="minimum NLL, grid 0.01; [before, after]")
    logger.info("temperature %.2f: NLL %.4f -> %.4f, ECE %.4f -> %.4f (%d images)", fit["temperature"],
                *fit["nll"], *fit["ece"], len(probabilities))
    if not args.no_card:
        from convert.card import write_json

        card["calibration"] = fit
        write_json(card, card_path(args.model))
        logger.info("wrote calibration into %s", card_path(args.model))
    return fit


if __name__ == "__main__":
    main()
