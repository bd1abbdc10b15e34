"""The conversion, stage by stage: load → sample calibration images → export → int8 (and float) TFLite →
validate through the edge's own classifier → card → move into place.

Everything is staged in a temporary folder beside the output and renamed into place only when every check has
passed, so a failed run never leaves a half-written or unchecked model behind.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from convert import export, validate
from convert.card import model_card, write_json, write_sealed
from convert.dataset import Item, Reader, list_folder, stratified_order
from convert.errors import ConversionError
from convert.labels import resolve_labels
from convert.source import SourceModel, load_source
from convert.wrap import serving_function
from edge.classifier import Classifier
from edge.integrity import file_integrity
from edge.model_card import card_path


@dataclass(frozen=True)
class Options:
    """What to convert and how; see ``python -m convert --help`` for each option."""

    model: Path
    calibration: Path
    out: Path
    count: int = 200
    belt_share: float = 0.5
    seed: int = 0
    validation: Path | None = None
    validation_count: int | None = None
    labels: Path | None = None
    max_drop: float = 2.0
    float_model: bool = False
    threads: int | None = None


def float_path(out: Path) -> Path:
    """Where ``--float`` writes the float32 model: ``NAME.float.tflite`` beside ``NAME.tflite``."""
    return out.with_name(out.stem + ".float.tflite")


def say(line: str) -> None:
    """One line of the conversion's log on stderr (stdout stays free for the summary)."""
    print(line, file=sys.stderr, flush=True)


def calibration_set(options: Options, size: tuple[int, int]) -> tuple[np.ndarray, list[Item], int]:
    """The first ``count`` readable images in stratified order: pixels, the items used, unreadable skipped."""
    reader = Reader(size, options.belt_share, options.seed)
    ordered = stratified_order(list_folder(options.calibration, "calibration"), options.seed)
    taken = list(islice(reader.prepared(ordered), options.count))
    if not taken:
        raise ConversionError(
            f"calibration folder has no readable images: {options.calibration} ({len(reader.skipped)} unreadable)"
        )
    return np.stack([pixels for pixels, _ in taken]), [item for _, item in taken], len(reader.skipped)


def validation_items(options: Options, calibration_items: list[Item]) -> tuple[list[Item], str]:
    """The images to validate on and where they come from (the calibration images when no folder is given)."""
    if options.validation is None:
        say("warning: no --validation folder; validating on the calibration images (optimistic figures)")
        return calibration_items, f"calibration images of {options.calibration}"
    items = stratified_order(list_folder(options.validation, "validation"), options.seed)
    return items[: options.validation_count] if options.validation_count else items, str(options.validation)


def quantization_entry(report: export.Int8Report, calibration: dict[str, Any]) -> dict[str, Any]:
    """The card's ``quantization`` section of the int8 model."""
    return {
        "mode": "full-integer post-training quantization",
        "weights": "int8 (per-channel for convolutions)",
        "activations": "int8",
        "input": {"dtype": "uint8", "scale": report.input_scale, "zero_point": report.input_zero_point,
                  "note": "raw pixels: the graph input is float pixels pinned to 0..255"},
        "output": {"dtype": report.output_dtype,
                   "note": "the int8 softmax (steps of 1/256) dequantized inside the model; same values as a "
                           "uint8/int8 output, without output parameters to apply"},
        "tensor_dtypes": report.tensor_dtypes,
        "calibration": calibration,
    }


def run(options: Options) -> dict[str, Any]:
    """Convert, validate and write ``options.out`` and its card (and the float model); return the int8 card."""
    started = time.monotonic()
    out = options.out
    if out.suffix != ".tflite":
        raise ConversionError(f"--out must end in .tflite, got {out}")
    if not out.parent.is_dir():
        raise ConversionError(f"output folder not found: {out.parent}")
    if options.count < 1 or (options.validation_count is not None and options.validation_count < 1):
        raise ConversionError("--count and --validation-count must be at least 1")
    source = load_source(options.model)
    labels = resolve_labels(source.classes, options.labels)
    say(f"model: {source.path.name}, input height {source.height} width {source.width}, {source.classes} classes")
    pixels, used, skipped = calibration_set(options, source.size)
    per_class = dict(sorted(Counter(label or "(unlabelled)" for _, label in used).items()))
    say(f"calibration: {len(used)} images, {skipped} unreadable skipped, per class {per_class}")
    calibration = {"folder": str(options.calibration), "images": len(used), "requested": options.count,
                   "per_class": per_class, "skipped_unreadable": skipped, "seed": options.seed,
                   "sampling": "classes shuffled with the seed, taken round robin",
                   "belt_share": options.belt_share}
    items, validated_on = validation_items(options, used)
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=out.parent) as temp:
        staging = Path(temp)
        staged = _stage_int8(source, labels, pixels, calibration, staging / out.name)
        staged_float = _stage_float(source, labels, staging / float_path(out).name) if options.float_model else None
        figures, skipped_validation = _validate(source, staged, staged_float, items, options.threads)
        for line in validate.report(figures, labels):
            say(line)
        figures |= {"on": validated_on, "skipped_unreadable": skipped_validation, "max_drop_pp": options.max_drop}
        _check_drop(figures, options.max_drop)
        card = _finish_cards(staged, staged_float, figures, source)
        for path in [staged, staged_float]:
            if path is not None:
                os.replace(path, out.parent / path.name)
                os.replace(card_path(path), out.parent / card_path(path).name)
    elapsed = time.monotonic() - started
    say(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {card_path(out).name} in {elapsed:.0f} s")
    return card


def _stage_int8(source: SourceModel, labels: tuple[str, ...], pixels: np.ndarray, calibration: dict[str, Any],
                path: Path) -> Path:
    function, spec = serving_function(source.model, source.height, source.width, int8=True)
    export.export_saved_model(source.model, function, spec, path.parent / "saved_model_int8")
    flatbuffer = export.to_int8(path.parent / "saved_model_int8", pixels)
    report = export.check_int8(flatbuffer)
    say(f"int8 input quantization: scale {report.input_scale:g}, zero point {report.input_zero_point}")
    path.write_bytes(flatbuffer)
    write_json(_card(source, labels, path, quantization_entry(report, calibration)), card_path(path))
    return path


def _stage_float(source: SourceModel, labels: tuple[str, ...], path: Path) -> Path:
    function, spec = serving_function(source.model, source.height, source.width, int8=False)
    export.export_saved_model(source.model, function, spec, path.parent / "saved_model_float")
    path.write_bytes(export.to_float(path.parent / "saved_model_float"))
    quantization = {"mode": "none: float32 weights and activations",
                    "input": {"dtype": "uint8", "scale": 0.0, "zero_point": 0, "note": "cast to float32 inside"}}
    write_json(_card(source, labels, path, quantization), card_path(path))
    return path


def _card(source: SourceModel, labels: tuple[str, ...], path: Path, quantization: dict[str, Any]) -> dict[str, Any]:
    """The staged card, before validation: ``_finish_cards`` adds the figures once they are known."""
    sizes = {"tflite": path.stat().st_size, "keras": source.path.stat().st_size}
    card = model_card(labels=labels, height=source.height, width=source.width, quantization=quantization,
                      validation=None, sizes=sizes,
                      source={"file": source.path.name, "sha256": source.sha256})
    return card | {"integrity": file_integrity(path, labels)}


def _validate(source: SourceModel, staged: Path, staged_float: Path | None, items: list[Item],
              threads: int | None) -> tuple[dict[str, Any], int]:
    reader = Reader(source.size)
    with ExitStack() as stack:
        classifier = stack.enter_context(Classifier(staged, threads))
        float_classifier = stack.enter_context(Classifier(staged_float, threads)) if staged_float else None
        predictions = validate.predict(source.model, classifier, items, reader, float_classifier)
    return validate.metrics(predictions, classifier.labels), len(reader.skipped)


def _check_drop(figures: dict[str, Any], max_drop: float) -> None:
    if "drop_pp" not in figures:
        say("warning: validation images have no labels (flat folder): accuracy drop not checked")
    elif figures["drop_pp"] > max_drop:
        raise ConversionError(
            f"int8 top-1 dropped {figures['drop_pp']:.2f} pp (float {figures['float_top1_pct']:.2f}%, "
            f"int8 {figures['int8_top1_pct']:.2f}%), more than --max-drop {max_drop:g}; nothing written"
        )


def _finish_cards(staged: Path, staged_float: Path | None, figures: dict[str, Any],
                  source: SourceModel) -> dict[str, Any]:
    """Rewrite the staged cards with the validation figures, the sizes of both models and the probe output."""
    sizes = {"tflite": staged.stat().st_size, "keras": source.path.stat().st_size}
    if staged_float is not None:
        sizes["float_tflite"] = staged_float.stat().st_size
        float_figures = {key: figures[key] for key in ("images", "on", "float_tflite")}
        write_sealed(staged_float, {"validation": float_figures, "size_bytes": sizes})
    card = write_sealed(staged, {"validation": figures, "size_bytes": sizes})
    say(f"size: int8 {sizes['tflite'] / 1e6:.1f} MB" + (
        f", float {sizes['float_tflite'] / 1e6:.1f} MB ({sizes['float_tflite'] / sizes['tflite']:.1f}x)"
        if staged_float is not None else "") + f", Keras file {sizes['keras'] / 1e6:.1f} MB")
    return card
