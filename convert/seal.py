"""``python -m convert.seal MODEL.tflite...``: write a model card's ``integrity`` section (``edge.integrity``).

The converter seals every card it writes; this seals a card made before cards carried the section (or with the
one-image probe of ``smartbin.probe/1``), or after a deliberate edit of its labels. It trusts the model and card
as they are: run it only on a pair you know is right. It prints the label pairs no probe image tells apart.
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
        probe = card["integrity"]["probe"]
        print(f"sealed {card_path(model)}: sha256 {card['integrity']['tflite_sha256'][:12]}…, "
              f"{len(probe['images'])} probe images, {alike(probe['alike'])}")
    return 0


def alike(pairs: list[list[str]]) -> str:
    """The label pairs the probe cannot tell apart, in words."""
    if not pairs:
        return "every two labels told apart"
    return (f"WARNING: {len(pairs)} label pairs alike on every candidate image, a swap of them not caught: "
            + ", ".join("/".join(pair) for pair in pairs))


if __name__ == "__main__":
    sys.exit(main())
