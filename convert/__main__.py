"""``python -m convert MODEL.keras --calibration DIR --out OUT.tflite``: parse options, run, one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edge.errors import SmartbinError


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m convert",
        description="Convert a trained Keras ResNet-50 classifier into a validated full-int8 TFLite model "
        "(uint8 RGB pixel input, caffe preprocessing inside) with its model card OUT.json.",
    )
    p.add_argument("model", type=Path, help="the trained Keras 3 model (.keras)")
    p.add_argument("--calibration", type=Path, required=True,
                   help="calibration images: one sub-folder per class, or a flat folder")
    p.add_argument("--out", type=Path, required=True, help="the int8 model to write (.tflite); its card goes beside it")
    p.add_argument("--count", type=int, default=200,
                   help="calibration images to use, stratified across classes (default: 200)")
    p.add_argument("--belt-share", type=float, default=0.5,
                   help="share of the calibration images shown as the sorter sees items on a belt (the photo's "
                   "item on a random belt, then the item crop); the rest as photos (default: 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration/validation sampling (default: 0)")
    p.add_argument("--validation", type=Path,
                   help="validation images, one sub-folder per label (default: the calibration images)")
    p.add_argument("--validation-count", type=int, help="use at most this many validation images, stratified")
    p.add_argument("--labels", type=Path,
                   help="labels file, one per line in output-index order (default: the 12 garbage classes)")
    p.add_argument("--max-drop", type=float, default=2.0,
                   help="largest float→int8 top-1 drop allowed, in percentage points (default: 2.0)")
    p.add_argument("--float", dest="float_model", action="store_true",
                   help="also write NAME.float.tflite, the same network in float32 (uint8 input), for benchmarks")
    p.add_argument("--threads", type=int, help="interpreter threads for validation (default: all cores)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the converter; SmartbinError becomes ``convert: <message>`` on stderr and a non-zero exit."""
    args = parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from convert.pipeline import Options, run

    try:
        run(Options(**vars(args)))
    except SmartbinError as exc:
        print(f"convert: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
