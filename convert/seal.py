"""``python -m convert.seal MODEL.tflite...``: write a model card's ``integrity`` section (``edge.integrity``).

The converter seals every card it writes; this seals a card made before cards carried the section, or after a
deliberate edit of its labels. It trusts the model and card as they are: run it only on a pair you know is right.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.card import write_sealed
from edge.errors import SmartbinError
from edge.model_card import card_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.seal", description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", metavar="MODEL", help=".tflite files, each with its card")
    args = parser.parse_args(argv)
    for model in args.models:
        try:
            card = write_sealed(model)
        except (SmartbinError, OSError, ValueError) as exc:
            print(f"convert.seal: {model}: {exc}", file=sys.stderr)
            return 1
        print(f"sealed {card_path(model)}: sha256 {card['integrity']['tflite_sha256'][:12]}…, probe top "
              f"{max(card['integrity']['probe']['output'].items(), key=lambda kv: kv[1])[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
