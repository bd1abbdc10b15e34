"""The Markdown model card (``models/README.md``), written from the shipped card and the training record.

    python -m models.report --card models/garbage12_resnet50_int8.json \
        --training models/float_test_metrics.json --out models/README.md

Every figure comes from the two JSON files, so a rebuild regenerates a consistent card.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from models.split import SPLITS, read_manifest

TARGETS = {"top1": 0.965, "weighted_f1": 0.965, "agreement": 0.99, "drop_pp": 0.5, "belt_top1": 0.95}


def _mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def headline(test: dict[str, Any]) -> list[str]:
    """The table of headline figures against the issue's targets."""
    i8, fl = test["int8"], test["float"]
    rows = [
        ("top-1", f"{i8['top1']:.4f}", f"{fl['top1']:.4f}", "≥ 0.965", _mark(i8["top1"] >= TARGETS["top1"])),
        ("weighted F1", f"{i8['weighted_f1']:.4f}", f"{fl['weighted_f1']:.4f}", "≥ 0.965",
         _mark(i8["weighted_f1"] >= TARGETS["weighted_f1"])),
        ("macro F1", f"{i8['macro_f1']:.4f}", f"{fl['macro_f1']:.4f}", "", ""),
        ("float/int8 top-1 agreement", f"{test['top1_agreement']:.2%}", "", "≥ 99 %",
         _mark(test["top1_agreement"] >= TARGETS["agreement"])),
        ("int8 drop vs float", f"{test['drop_pp']:+.2f} pp", "", "≤ 0.5 pp",
         _mark(test["drop_pp"] <= TARGETS["drop_pp"])),
    ]
    lines = ["| test split | int8 (shipped) | float (Keras) | target | |", "|---|---:|---:|---:|---|"]
    return lines + [f"| {' | '.join(row)} |" for row in rows]


def belt_headline(belt: dict[str, Any]) -> list[str]:
    """The belt view set's figures."""
    i8, fl = belt["int8"], belt["float"]
    rows = [
        ("top-1", f"{i8['top1']:.4f}", f"{fl['top1']:.4f}", "≥ 0.95", _mark(i8["top1"] >= TARGETS["belt_top1"])),
        ("weighted F1", f"{i8['weighted_f1']:.4f}", f"{fl['weighted_f1']:.4f}", "", ""),
        ("float/int8 top-1 agreement", f"{belt['top1_agreement']:.2%}", "", "", ""),
    ]
    lines = ["| belt view set | int8 (shipped) | float (Keras) | goal | |", "|---|---:|---:|---:|---|"]
    return lines + [f"| {' | '.join(row)} |" for row in rows]


def per_class(test: dict[str, Any], labels: list[str]) -> list[str]:
    """Per-class precision / recall / F1 of the int8 model, recall of the float model."""
    lines = [
        "| class | test photos | int8 precision | int8 recall | int8 F1 | float precision | float recall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        i8, fl = test["int8"]["per_class"][label], test["float"]["per_class"][label]
        lines.append(f"| {label} | {i8['support']} | {i8['precision']:.3f} | {i8['recall']:.3f} | {i8['f1']:.3f} "
                     f"| {fl['precision']:.3f} | {fl['recall']:.3f} |")
    return lines


def split_table(manifest: Path, labels: list[str]) -> list[str]:
    """Photos per class and split."""
    counts = Counter((e.label, e.split) for e in read_manifest(manifest))
    lines = ["| class | " + " | ".join(SPLITS) + " |", "|---|" + "---:|" * len(SPLITS)]
    lines += [f"| {label} | " + " | ".join(str(counts[(label, s)]) for s in SPLITS) + " |" for label in labels]
    totals = [sum(counts[(label, s)] for label in labels) for s in SPLITS]
    return [*lines, "| **all** | " + " | ".join(f"**{n}**" for n in totals) + " |"]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def render(card: dict[str, Any], training: dict[str, Any], manifest: Path, template: str) -> str:
    """The Markdown card."""
    test, labels = card["test"], list(card["labels"])
    recipe, fit = training["recipe"], training["training"]
    confusions = "\n".join(
        f"- {c['true']} → {c['predicted']}: {c['count']} of {test['int8']['per_class'][c['true']]['support']}"
        for c in test["int8"]["top_confusions"]
    )
    values = {
        "headline": "\n".join(headline(test)),
        "belt_headline": "\n".join(belt_headline(card["test_belt"])),
        "belt_recall": ", ".join(f"{label} {card['test_belt']['int8']['per_class'][label]['recall']:.3f}"
                                 for label in labels),
        "per_class": "\n".join(per_class(test, labels)),
        "split_table": "\n".join(split_table(manifest, labels)),
        "confusions": confusions,
        "images": test["images"],
        "tflite_mb": f"{card['size_bytes']['tflite'] / 1e6:.1f}",
        "keras_mb": f"{card['size_bytes']['keras'] / 1e6:.1f}",
        "keras_sha": card["source"]["sha256"],
        "photo_views": recipe["photo_views"],
        "belt_views": recipe["belt_views"],
        "epochs": recipe["epochs"],
        "clean_share": "evenly" if recipe.get("clean_share") is None else f"{recipe['clean_share']:g}",
        "clean_share_arg": recipe.get("clean_share"),
        "epochs_run": fit["epochs_run"],
        "best_epoch": fit["best_epoch"],
        "lr": recipe["lr"],
        "batch": recipe["batch"],
        "smoothing": recipe["label_smoothing"],
        "power": recipe["class_weight_power"],
        "patience": recipe["patience"],
        "seed": recipe["seed"],
        "train_time": _minutes(fit["seconds"]),
        "extract_time": _minutes(training["extraction"]["seconds"]),
        "extract_images": training["extraction"]["images"],
        "cpu": training["machine"]["cpu"],
        "cores": training["machine"]["cores"],
        "tf": training["versions"]["tensorflow"],
        "keras": training["versions"]["keras"],
        "int8_ms": f"{1000 * test['int8_seconds_per_image']:.0f}",
        "eval_cores": test["machine"]["cores"],
        "calibration": card["quantization"].get("calibration", {}).get("images", "?"),
        "belt_share": f"{card['quantization'].get('calibration', {}).get('belt_share', 0):.0%}",
        "val_top1": f"{training['val_from_features']['clean']['top1']:.4f}",
        "val_belt_top1": f"{training['val_from_features']['belt']['top1']:.4f}",
        "trunk_tuning": trunk_tuning(training.get("tune_trunk")),
        **calibration_values(card.get("calibration")),
    }
    return template.format(**values)


def trunk_tuning(stages: list[dict[str, Any]] | None) -> str:
    """The card's lines on whole-trunk tuning (``models.tune_trunk``): one a stage, what ran where, val before →
    after."""
    if not stages:
        return "- **Whole-trunk tuning**: none; the trunk up to `conv5_block3` is ImageNet's."
    return "\n".join(_stage_line(stage, number, len(stages)) for number, stage in enumerate(stages, 1))


def _stage_line(stage: dict[str, Any], number: int, count: int) -> str:
    before, after = stage["before"], stage["after"]
    title = "Whole-trunk tuning" if count == 1 else f"Whole-trunk tuning, stage {number} of {count}"
    on = "on the model above" if number == 1 else f"on stage {number - 1}'s model"
    belt = after["belt"]
    tested = f"; {belt['gained']} gained, {belt['lost']} lost: sign test p {belt['p']:.2g}" if "p" in belt else ""
    draws = stage.get("belt_draws", 1)
    on_draws = f" ({draws} draws of belts)" if draws > 1 else ""
    judged = (f"Val top-1, before → after: photos {before['photos']['top1']:.4f} → {after['photos']['top1']:.4f}, "
              f"belt views{on_draws} {before['belt']['top1']:.4f} → {belt['top1']:.4f}{tested} (kept only when "
              "better on belt views beyond chance, photos within 0.3 pp).")
    run = stage.get("run")
    if not run:
        return f"- **{title}** (`python -m models.tune_trunk`, {on}): trained elsewhere, no run record. {judged}"
    recipe, where = run["recipe"], run["machine"]
    if isinstance(where, dict):
        where = f"{where['cpu']} ({where['cores']} cores, Keras on {where.get('keras_backend', 'tensorflow')})"
    return (f"- **{title}** (`python -m models.tune_trunk`, {on}): every convolution and dense layer trainable, "
            f"batch norms frozen; {run['epochs']:g} epochs of fresh views (clean {recipe['clean_share']:g}, "
            f"augmented photo {recipe.get('photo_share', 0):g}, the rest belt views), Adam {recipe['lr']:g} with "
            f"warm-up and cosine decay, batch {recipe['batch']}, label smoothing {recipe['label_smoothing']}, "
            f"class-weight power {recipe['class_weight_power']}; {_minutes(run['seconds'])} on {where}. {judged}")


def calibration_values(calibration: dict[str, Any] | None) -> dict[str, str]:
    """The card's probability calibration (``models.calibrate``), or 'none' where it has not been fitted."""
    if not calibration:
        return {"temperature": "1 (not calibrated: run `python -m models.calibrate`)", "calibration_fit": ""}
    nll, ece = calibration["nll"], calibration["ece"]
    return {"temperature": f"{calibration['temperature']:g}",
            "calibration_fit": f" (NLL {nll[0]:.3f} → {nll[1]:.3f}, expected calibration error {ece[0]:.3f} → "
                               f"{ece[1]:.3f} on the {calibration['images']:,} val photos and belt views)"}


TEMPLATE = Path(__file__).with_name("README.template.md")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, default=Path("models/garbage12_resnet50_int8.json"), help="model card")
    parser.add_argument("--training", type=Path, default=Path("models/float_test_metrics.json"),
                        help="training record written by models.train")
    parser.add_argument("--manifest", type=Path, default=Path("models/split.csv"), help="split manifest")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="Markdown template")
    parser.add_argument("--out", type=Path, default=Path("models/README.md"), help="Markdown card to write")
    args = parser.parse_args(argv)
    card = json.loads(args.card.read_text(encoding="utf-8"))
    training = json.loads(args.training.read_text(encoding="utf-8"))
    args.out.write_text(render(card, training, args.manifest, args.template.read_text(encoding="utf-8")),
                        encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
