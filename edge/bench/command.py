"""``smartbin bench``: its arguments, and writing the outputs of a run."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

from edge.config import Settings
from edge.errors import ConfigError

HELP = "offline benchmark: speed and accuracy of one or more models on a folder of labelled photos"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench command's options (``--config`` comes from the CLI: default model, threshold, votes)."""
    parser.add_argument("--model", type=Path, action="append", default=None, metavar="M.tflite",
                        help="model to benchmark, its card M.json beside it; repeat for several, side by side "
                             "(default: the configured model, i.e. the bundled one)")
    parser.add_argument("--images", type=Path, required=True, metavar="DIR",
                        help="photos, one sub-folder per class (the folder name is the truth)")
    parser.add_argument("--threads", type=thread_list, default=None, metavar="N,N",
                        help="interpreter thread counts, comma-separated (default: 1 and all cores)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="report folder (default: bench-YYYYmmdd-HHMMSS in the current folder)")
    parser.add_argument("--split-manifest", type=Path, default=None, metavar="CSV",
                        help="only the images of one split of this manifest (path,label,split; paths relative "
                             "to DIR), e.g. models/split.csv")
    parser.add_argument("--split", default=None, help="the split to take from --split-manifest (default: test)")
    parser.add_argument("--max-images", type=positive, default=None, metavar="N",
                        help="at most N images, taken in turn from each class (a quick run)")
    parser.add_argument("--warmup", type=positive, default=5, metavar="N",
                        help="invokes before timing, per model and thread count (default 5)")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="confidence threshold (default: the configured sorting.threshold)")


def positive(text: str) -> int:
    """A positive integer argument."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def thread_list(text: str) -> tuple[int, ...]:
    """'1,2,4' → (1, 2, 4), in the order given, without repeats."""
    return tuple(dict.fromkeys(positive(part.strip()) for part in text.split(",") if part.strip())) or (1,)


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run the benchmark, print the tables, write the report folder."""
    from edge.bench import plots, report
    from edge.bench.runner import Options, run

    if args.split and not args.split_manifest:
        raise ConfigError("--split needs --split-manifest")
    threshold = settings.sorting.threshold if args.threshold is None else args.threshold
    if not 0 <= threshold <= 1:
        raise ConfigError(f"--threshold: must lie in [0, 1], got {threshold:g}")
    options = Options(
        models=tuple(args.model or [settings.model.path]), images=args.images,
        threads=args.threads or tuple(dict.fromkeys((1, os.cpu_count() or 1))), threshold=threshold,
        votes=settings.sorting.votes, warmup=args.warmup, manifest=args.split_manifest, split=args.split,
        max_images=args.max_images, config=settings,
    )
    out = args.out or Path(f"bench-{datetime.now():%Y%m%d-%H%M%S}")
    bench = run(options)
    out.mkdir(parents=True, exist_ok=True)
    data = report.build(bench)
    skipped = plots.missing()
    drawn = [] if skipped else plots.write(bench, data, out)
    data.update(plots=drawn, plots_skipped=skipped)
    for model in bench.models:
        report.write_image_csv(bench, model, out / f"images-{model.name}.csv")
    report.write_json(data, out / "report.json")
    (out / "report.md").write_text(report.markdown(data, drawn), encoding="utf-8")
    print(report.terminal(data))
    print(f"\nreport: {out}/ report.json, report.md, {', '.join(drawn) if drawn else 'plots ' + str(skipped)}")
    return 0
