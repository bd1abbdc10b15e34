"""``smartbin tune``: on labelled photos, the reject cost and quarantine setting that meet the operator's target.

Classifies every photo once with the configured model, then decides them again under each pair of
``costs.reject`` (``edge.bench.bins.REJECT_COSTS``) and ``sorting.quarantine_p`` (QUARANTINE_PS), the rest of the
config as it is. A setting meets the target when the hazardous leak, the reject rate and (if asked) every bin's
purity but the reject bin's are within it; of those, the one that puts the most items in their right bin (then
the fewest rejects) is printed as config lines to paste. When none meets it, it says so, and which came closest.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.config import Settings
from edge.errors import ConfigError

if TYPE_CHECKING:  # the CLI imports this module for its arguments: numpy and the runtime load on use
    import numpy as np

HELP = "find the reject cost and quarantine setting that meet a target on labelled photos"
QUARANTINE_PS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def share_argument(text: str) -> float:
    """A share 0-1 (``0.005``) or a percentage (``0.5%``)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {text!r} (e.g. 0.005 or 0.5%)") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1]: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The tune command's options (``--config`` comes from the CLI: model, bins, costs)."""
    parser.add_argument("--images", type=Path, required=True, metavar="DIR",
                        help="labelled photos, one sub-folder per class, e.g. the test split or the site's own")
    parser.add_argument("--split-manifest", type=Path, default=None, metavar="CSV",
                        help="only the images of one split of this manifest (path,label,split)")
    parser.add_argument("--split", default=None, help="the split to take from --split-manifest (default: test)")
    parser.add_argument("--max-leak", type=share_argument, default=0.005, metavar="SHARE",
                        help="hazardous items allowed into another bin, share of them (default 0.005)")
    parser.add_argument("--max-reject", type=share_argument, default=0.05, metavar="SHARE",
                        help="items allowed to the reject bin, share of all (default 0.05)")
    parser.add_argument("--min-purity", type=share_argument, default=None, metavar="SHARE",
                        help="purity every bin but the reject bin must reach (default: no target)")


@dataclass(frozen=True)
class Candidate:
    """One setting and what it gives."""

    reject: float
    quarantine_p: float
    result: dict[str, Any]

    def misses(self, args: argparse.Namespace, reject_bin: str) -> list[str]:
        """The parts of the target this setting misses, in words (empty: it meets it)."""
        r, missed = self.result, []
        if r["hazardous_leak"] is not None and r["hazardous_leak"] > args.max_leak:
            missed.append(f"leak {pct(r['hazardous_leak'])} > {pct(args.max_leak)}")
        if r["reject_rate"] > args.max_reject:
            missed.append(f"rejects {pct(r['reject_rate'])} > {pct(args.max_reject)}")
        if args.min_purity is not None:
            for name, b in r["bins"].items():
                if name != reject_bin and b["items"] and b["purity"] < args.min_purity:
                    missed.append(f"{name} purity {pct(b['purity'])} < {pct(args.min_purity)}")
        return missed


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def candidates(settings: Settings, labels: tuple[str, ...], temperature: float, probabilities: np.ndarray,
               truth: np.ndarray) -> list[Candidate]:
    """Every setting of the grid (quarantine_p only where a bin is hazardous)."""
    from edge.bench.bins import REJECT_COSTS, figures, with_costs
    from edge.decision import decider_for

    found = []
    quarantine = QUARANTINE_PS if settings.hazardous_classes else (settings.sorting.quarantine_p,)
    for reject in REJECT_COSTS:
        for quarantine_p in quarantine:
            variant = with_costs(settings, reject=reject)
            variant = variant.model_copy(update={"sorting": variant.sorting.model_copy(
                update={"quarantine_p": quarantine_p})})
            found.append(Candidate(reject, quarantine_p,
                                   figures(decider_for(variant, labels, temperature), variant, probabilities, truth)))
    return found


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """Classify the photos, search the grid, print the best setting's config lines (exit 0) or why none fits (1)."""
    import numpy as np

    from edge.bench.dataset import collect
    from edge.bench.timing import run_pass
    from edge.model_card import read_card
    from edge.progress import Progress

    if args.split and not args.split_manifest:
        raise ConfigError("--split needs --split-manifest")
    image_set = collect(args.images, args.split_manifest, args.split)
    model = settings.model.path
    card = read_card(model)
    labels = card.labels
    images = [image for image in image_set.images if image.truth in labels]
    if not images:
        raise ConfigError(f"--images: no photo in a sub-folder named like a class of {model.name}")
    progress = Progress("tune", len(images), every=10.0)
    done = run_pass(model, settings.model.threads or os.cpu_count() or 1, images, 1, progress, "classify")
    progress.finish()
    truth = np.array([labels.index(images[i].truth) for i in done.readable])
    grid = candidates(settings, labels, card.temperature, done.probabilities, truth)
    reject_bin = settings.sorting.reject_bin
    meeting = [c for c in grid if not c.misses(args, reject_bin)]
    print(f"{len(truth)} photos, {int(grid[0].result['hazardous_items'])} of a hazardous class; "
          f"{len(grid)} settings tried (costs.reject x sorting.quarantine_p)")
    if not meeting:
        closest = min(grid, key=lambda c: (len(c.misses(args, reject_bin)), c.result["hazardous_leak"] or 0,
                                           c.result["reject_rate"]))
        print(f"the target cannot be met on these photos; closest: costs.reject = {closest.reject:g}, "
              f"sorting.quarantine_p = {closest.quarantine_p:g}: {'; '.join(closest.misses(args, reject_bin))}")
        return 1
    best = max(meeting, key=lambda c: (c.result["right_bin"], -c.result["reject_rate"], -c.reject))
    r = best.result
    purities = ", ".join(f"{name} {pct(b['purity'])}" for name, b in r["bins"].items() if b["items"])
    print(f"meets the target: right bin {pct(r['right_bin'])}, rejected {pct(r['reject_rate'])}, hazardous leak "
          f"{pct(r['hazardous_leak'])} ({r['hazardous_leaked']}/{r['hazardous_items']}); purity {purities}")
    print("\nset in the config (each key in its section):\n")
    if settings.hazardous_classes:
        print(f"[sorting]\nquarantine_p = {best.quarantine_p:g}\n")
    print(f"[costs]\nreject = {best.reject:g}")
    if settings.costs is None:
        print("# the config has no [costs] yet: adding it switches to expected-cost decisions")
    return 0
