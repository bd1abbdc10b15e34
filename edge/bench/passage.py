"""How well the vision trigger measures each item's passage, on the belt simulator, offline.

    .venv/bin/python -m edge.bench.passage --images ../shared/data/garbage12 --speeds 0.2,0.4 --items 200

A gate holds for an item from before its front arrives until its tail has passed, as the trigger measured
them, plus ``conveyor.pass_margin_m`` of belt either side. This renders the simulator's belt frame by frame at
``camera.fps`` (as fast as the machine allows, no model, no gates), runs the configured vision trigger and
item tracker on the frames, and compares each item's front and tail as measured (``t_line`` ∓ ``passing_s``
/ 2, in metres of belt) with where they really are (the item's cut-out, alpha ≥ 0.5). Prints, per speed, how
far the measured ends fall short of the real ones (negative: the gate would be held too briefly there) or
beyond them, the share of items measured short by more than the margin at either end (they would meet a gate
moving), the share short by more than the margin and the whole slack (``conveyor.pass_slack_m``, which a
gate takes only where no neighbour needs it), and the margin that would have covered every item. Items with no
measured length (held for ``item_pass_s``) are counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.app import vision_trigger
from edge.bench.conveyor import belt_arguments
from edge.config import Settings
from edge.sources.conveyor import BeltSimulator, simulator_for
from edge.trigger import ItemTracker


@dataclass(frozen=True)
class Passage:
    """One item as the trigger measured it: metres its front and its tail were measured beyond the real ones
    (negative: short), or ``None`` when its length was not measured."""

    truth: str | None
    ends_m: tuple[float, float] | None


def passages(settings: Settings, images: Path | None, speed: float, items: int) -> list[Passage]:
    """The first ``items`` items the trigger found on the simulator at belt speed ``speed`` (``images``:
    labelled photos; ``None``: drawn items)."""
    settings = settings.model_copy(update={
        "conveyor": settings.conveyor.model_copy(update={"belt_speed_m_s": speed}),
        "simulator": settings.simulator.model_copy(update={"items": images}),
    })
    simulator: BeltSimulator = simulator_for(settings)
    tracker = ItemTracker(vision_trigger(settings), settings.sorting.votes, settings.conveyor.absent_frames)
    interval = 1.0 / (settings.camera.fps or 10.0)
    frames = round(3 * items * settings.simulator.spacing_m / speed / interval) + 100  # a belt with nothing seen ends
    found: list[Passage] = []
    with simulator:
        for n in range(1, frames):
            if len(found) == items:
                break
            item = tracker.update(simulator.frame_at(simulator.t0 + n * interval))
            real = simulator.item_in(item.first.number) if item is not None else None
            if item is None or real is None:
                continue
            if item.passing_s is None:
                found.append(Passage(real.truth, None))
                continue
            ahead, behind = real.extent_m
            late_m = (item.t_line - real.t_line) * speed  # the measured centre behind the real one
            half = item.passing_s * speed / 2
            found.append(Passage(real.truth, (half - late_m - ahead, half + late_m - behind)))
    return found


def summary(found: list[Passage], margin_m: float, slack_m: float = 0.0) -> dict[str, float]:
    """Percentiles of the ends' errors (metres), the share of measured items short by more than ``margin_m``
    (and by more than ``margin_m + slack_m``) at either end, and the margin that covers every measured item."""
    measured = np.array([p.ends_m for p in found if p.ends_m is not None], dtype=float).reshape(-1, 2)
    if not len(measured):
        return {"items": len(found), "unmeasured": len(found)}
    ends, worst = measured.ravel(), measured.min(axis=1)
    return {
        "items": len(found),
        "unmeasured": len(found) - len(measured),
        "p1": float(np.percentile(ends, 1)),
        "p5": float(np.percentile(ends, 5)),
        "median": float(np.median(ends)),
        "p95": float(np.percentile(ends, 95)),
        "short_beyond_margin": float(np.mean(worst < -margin_m)),
        "short_beyond_slack": float(np.mean(worst < -margin_m - slack_m)),
        "margin_for_all": float(max(0.0, -worst.min())),
    }


def main() -> None:
    args = belt_arguments(__doc__.split("\n\n")[0], items=200, images_required=False)
    settings = args.settings
    margin, slack = settings.conveyor.pass_margin_m, settings.conveyor.pass_slack_m
    print(f"ends of each item as measured, metres beyond the real ones (negative: short); margin {margin:.3f} m, "
          f"slack up to {slack:.3f} m")
    print(f"{'speed m/s':>9} {'items':>5} {'no length':>9} {'p1':>7} {'p5':>7} {'median':>7} {'p95':>7} "
          f"{'short > margin':>14} {'> margin+slack':>14} {'margin for all':>14}")
    for speed in args.speeds:
        f = summary(passages(settings, args.images, speed, args.items), margin, slack)
        if "p1" not in f:
            print(f"{speed:9.2f} {f['items']:5.0f} {f['unmeasured']:9.0f}  (no item measured)")
            continue
        print(f"{speed:9.2f} {f['items']:5.0f} {f['unmeasured']:9.0f} {f['p1']:+7.3f} {f['p5']:+7.3f} "
              f"{f['median']:+7.3f} {f['p95']:+7.3f} {f['short_beyond_margin']:14.1%} {f['short_beyond_slack']:14.1%} "
              f"{f['margin_for_all']:14.3f}",
              flush=True)


if __name__ == "__main__":
    main()
