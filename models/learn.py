"""``smartbin learn``: teach the model a site's belt from the frames its operator labelled, and stage the result.

    smartbin learn --frames DIR --out M.tflite
    smartbin learn --from http://BIN:8080 --token-file F --out M.tflite [--to http://BIN:8080]

1. **Labelled frames**: a folder with one sub-folder per class (what ``smartbin frames OUT --labelled`` and
   ``models.site_frames`` write), or the labels of a bin's Teach tab fetched from its page (``--from``:
   ``/api/teach/labels``, each frame from ``/api/items/ID/frame.jpg``; "not an item" is left out).
2. **Held out by item**: frames are grouped into items (a bin's frames are one item each; in a plain folder,
   frames that look the same, by the correlation of 16×16 thumbnails, are one item), and a quarter of each class's
   items (rounded up; none of a class with one item) is kept aside, by a stable hash, for the report and for
   the bin's comparison. Near-identical frames of one item never sit on both sides.
3. **Fine-tune** (``models.finetune``): ``conv5_block3`` + head on the frozen trunk's features of the site's
   frames (as is and mirrored) mixed with the train split's cached features, converted with the converter's
   parity gate (int8 top-1 on the test split), the card sealed.
4. **Temperature**: fitted on the val photos' int8 outputs (``models.calibrate``), into the card.
5. **Report** ``M.learn.json``: held-out site items and top-1 before / after (int8, through the edge's own
   classifier and crop for a frame), test-split top-1 before / after (int8), labelled items per class, the
   items trained on, minutes.
6. ``--to``: when it is better (it gains on the held-out site items and the test split falls by at most half a
   point; ``--force`` stages it anyway), the candidate is uploaded to the bin (``POST /api/model/stage``), which
   checks it as ``smartbin model install`` does and runs it as its shadow model; the page then shows both
   models' top-1 on the labelled frames the candidate was not trained on, and installs it or rolls it back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import ImageError, SmartbinError
from edge.images import labelled_images, read_rgb
from edge.model_card import read_card
from models import finetune
from models.features import DEFAULT_CACHE
from models.split import dataset_arguments

logger = logging.getLogger("models.learn")

WORK = finetune.WORK / "learn"
HELD_OUT_SHARE = 0.25
NOT_AN_ITEM = "not-an-item"
SAME_ITEM = 0.92  # thumbnails that correlate more are frames of one item
TIMEOUT_S = 30.0


class LearnError(SmartbinError):
    """Bad input to ``smartbin learn``: no frames, an unreachable bin, a refused token or upload."""


@dataclass(frozen=True)
class Frame:
    """One labelled frame and the item it shows (frames of one item share ``item``)."""

    path: Path
    label: str
    item: str


# -- the labelled frames --------------------------------------------------------------------------------------


def folder_frames(folder: Path) -> list[Frame]:
    """The frames of a labelled folder, grouped into items: a bin's export names each frame by its item's id;
    other frames are grouped by how alike their crops look (``same_items``)."""
    if not folder.is_dir():
        raise LearnError(f"frames folder not found: {folder}")
    pairs = [(path, label) for path, label in labelled_images(folder) if label != NOT_AN_ITEM]
    if not pairs:
        raise LearnError(f"{folder}: no labelled frames (one sub-folder per class)")
    by_label: dict[str, list[Path]] = defaultdict(list)
    for path, label in pairs:
        by_label[label].append(path)
    frames: list[Frame] = []
    for label, paths in by_label.items():
        if all(p.stem.isdigit() for p in paths):  # a bin's export: one kept frame per item, named by its id
            frames += [Frame(p, label, p.stem.lstrip("0") or "0") for p in paths]
        else:
            frames += [Frame(p, label, item) for p, item in zip(paths, same_items(paths), strict=True)]
    return frames


def thumbnail(path: Path) -> np.ndarray | None:
    """A frame as a 16×16 grey thumbnail, zero mean and unit length (None if it cannot be read)."""
    try:
        rgb = read_rgb(path)
    except ImageError:
        return None
    grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (16, 16), interpolation=cv2.INTER_AREA)
    values = grey.astype(np.float32).ravel()
    values -= values.mean()
    return values / max(float(np.linalg.norm(values)), 1e-6)


def same_items(paths: list[Path]) -> list[str]:
    """An item key for each frame: frames whose thumbnails correlate above SAME_ITEM, directly or through
    others, are one item (named by its first frame's file name). Joining two items that only look alike errs
    on the safe side: they are held out or trained on together."""
    thumbs = [thumbnail(p) for p in paths]
    parent = list(range(len(paths)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    readable = [(i, t) for i, t in enumerate(thumbs) if t is not None]
    if readable:
        matrix = np.stack([t for _, t in readable])
        close = np.argwhere(np.triu(matrix @ matrix.T, 1) > SAME_ITEM)
        for a, b in close:
            parent[root(readable[int(a)][0])] = root(readable[int(b)][0])
    return [paths[root(i)].name for i in range(len(paths))]


def bin_frames(url: str, token: str | None, into: Path) -> list[Frame]:
    """The labelled frames of a bin's Teach tab, downloaded into ``into/<label>/<id>.jpg`` (kept between runs:
    a frame already there is not fetched again)."""
    labels = json.loads(fetch(url, "/api/teach/labels", token))
    if not isinstance(labels, list):
        raise LearnError(f"{url}: /api/teach/labels did not answer a list")
    frames: list[Frame] = []
    wanted = [entry for entry in labels if entry.get("label") != NOT_AN_ITEM]
    for entry in wanted:
        item_id, label = int(entry["id"]), str(entry["label"])
        path = into / label / f"{item_id:08d}.jpg"
        if not path.is_file():
            try:
                jpeg = fetch(url, f"/api/items/{item_id}/frame.jpg", token)
            except LearnError as exc:
                if "HTTP 404" not in str(exc):
                    raise
                logger.warning("item %d: its frame is no longer on the bin; left out", item_id)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".part").write_bytes(jpeg)
            path.with_suffix(".part").replace(path)
        frames.append(Frame(path, label, str(item_id)))
    if not frames:
        raise LearnError(f"{url}: no labelled frames yet (label some on the page's Teach tab)")
    logger.info("%s: %d labelled frames (%d not an item, left out)", url, len(frames), len(labels) - len(wanted))
    return frames


def fetch(url: str, path: str, token: str | None, data: bytes | None = None,
          content_type: str | None = None) -> bytes:
    """The body of ``url`` + ``path`` (a POST when ``data`` is given); LearnError in one line otherwise."""
    request = urllib.request.Request(urllib.parse.urljoin(url.rstrip("/") + "/", path.lstrip("/")), data=data,
                                     headers={"X-Smartbin-Client": "learn"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as exc:
        raise LearnError(f"{request.full_url}: HTTP {exc.code}: {error_line(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LearnError(f"cannot reach the bin at {url}: {reason}") from None


def error_line(exc: urllib.error.HTTPError) -> str:
    """The one-line ``error`` of the bin's JSON answer, else its reason."""
    try:
        return str(json.loads(exc.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(exc.reason)


# -- held out by item ---------------------------------------------------------------------------------------


def hold_out(frames: list[Frame], share: float = HELD_OUT_SHARE) -> tuple[list[Frame], list[Frame]]:
    """(trained on, held out): per class, ``ceil(share · items)`` items by a stable hash of their key (none of
    a class with a single item), every frame of an item on its side."""
    items: dict[str, dict[str, list[Frame]]] = defaultdict(lambda: defaultdict(list))
    for frame in frames:
        items[frame.label][frame.item].append(frame)
    train: list[Frame] = []
    held: list[Frame] = []
    for label in sorted(items):
        keys = sorted(items[label], key=lambda key: hashlib.sha256(f"learn:{label}/{key}".encode()).hexdigest())
        count = math.ceil(share * len(keys)) if len(keys) > 1 else 0
        for rank, key in enumerate(keys):
            (held if rank < count else train).extend(items[label][key])
    if not train or not held:
        raise LearnError(f"{len(frames)} labelled frames of {len({f.item for f in frames})} items: too few to "
                         "train on and hold out a quarter (label at least two items of a class)")
    return train, held


def count_items(frames: list[Frame]) -> dict[str, int]:
    """Items per class."""
    found: dict[str, set[str]] = defaultdict(set)
    for frame in frames:
        found[frame.label].add(frame.item)
    return {label: len(found[label]) for label in sorted(found)}


# -- the run ------------------------------------------------------------------------------------------------


def finetune_args(args: argparse.Namespace, frames_root: Path) -> argparse.Namespace:
    """The fine-tune's options from ours."""
    return finetune.parse_args([
        "--frames", str(frames_root), "--current", str(args.current), "--out", str(args.out),
        "--data", str(args.data), "--manifest", str(args.manifest), "--cache", str(args.cache),
        "--epochs", str(args.epochs), "--mix", str(args.mix), "--seed", str(args.seed),
        "--belt-views", str(args.belt_views),
        "--calibration-count", str(args.calibration_count), "--max-drop", str(args.max_drop),
        *(["--base", str(args.base)] if args.base else []),
        *(["--train-photos", str(args.train_photos)] if args.train_photos else []),
        *(["--test-photos", str(args.test_photos)] if args.test_photos else []),
    ])


def temperature(model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Fit the model's temperature on the val photos (int8) and write it into its card."""
    from convert.card import write_json
    from edge.model_card import card_path
    from models.calibrate import fit_temperature
    from models.evaluate import tflite_probabilities
    from models.features import ViewSpec
    from models.split import read_manifest, select

    entries = finetune.every_nth(select(read_manifest(args.manifest), "val"), args.val_photos)
    labels = list(read_card(model).labels)
    truth = np.array([labels.index(e.label) for e in entries])
    probabilities = tflite_probabilities(model, args.data, entries, ViewSpec("val", "clean"), None)
    fit = fit_temperature(probabilities, truth)
    fit.update(split=f"{args.manifest.as_posix()}: val", images=len(entries), views=["clean"],
               fitted="minimum NLL, grid 0.01; [before, after]")
    card = json.loads(card_path(model).read_text(encoding="utf-8"))
    card["calibration"] = fit
    write_json(card, card_path(model))
    return fit


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Gather, hold out, learn (and stage); returns the report."""
    token = read_token(args.token_file)
    if args.source is not None:
        host = urllib.parse.urlsplit(args.source).netloc.replace(":", "_") or "bin"
        frames = bin_frames(args.source, token, args.work / host)
    else:
        frames = folder_frames(args.frames)
    train, held = hold_out(frames, args.held_out)
    report = learn(args, train, held)
    if args.to is not None:
        if report["verdict"] != "better" and not args.force:
            raise LearnError(f"not staged on {args.to}: {report['verdict']} (label more items, or --force to stage "
                             "it anyway)")
        report["staged"] = stage(args.to, token, args.out)
    return report


def learn(args: argparse.Namespace, train: list[Frame], held: list[Frame]) -> dict[str, Any]:
    """Fine-tune on ``train``, convert, calibrate and report on ``held``; writes ``OUT.learn.json``."""
    started, cpu = time.monotonic(), time.process_time()
    labels = list(read_card(args.current).labels)
    unknown = sorted({f.label for f in train + held} - set(labels))
    if unknown:
        raise LearnError(f"{', '.join(unknown)} not among the model's labels ({', '.join(labels)})")
    logger.info("%d items trained on (%d frames), %d held out (%d frames)", len({f.item for f in train}),
                len(train), len({f.item for f in held}), len(held))
    split = finetune.SiteFrames([(f.path, labels.index(f.label)) for f in train],
                                [(f.path, labels.index(f.label)) for f in held])
    tuned = finetune.run(finetune_args(args, args.frames or args.work), split)
    fit = temperature(args.out, args)
    test = {"before": test_top1(args.current, args), "after": test_top1(args.out, args)}
    int8 = tuned["int8_site_held_out"]
    report = {
        "model": args.out.name,
        "frames": args.source or str(args.frames),
        "labelled": count_items(train + held),
        "site_held_out": {"items": len({f.item for f in held}), "frames": len(held),
                          "before": {"model": int8["before"]["model"], "top1": int8["before"]["top1"]},
                          "after": {"model": int8["after"]["model"], "top1": int8["after"]["top1"]}},
        "test": {"images": tuned["int8_test"]["images"], "before": {"top1": test["before"]},
                 "after": {"top1": test["after"]}},
        "trained_items": sorted({f.item for f in train}),
        "held_out_items": sorted({f.item for f in held}),
        "temperature": fit["temperature"],
        "minutes": round((time.monotonic() - started) / 60, 1),
        "cpu_minutes": round((time.process_time() - cpu) / 60, 1),
        "fine_tune": {k: tuned[k] for k in ("recipe", "seconds", "float_from_features")},
    }
    report["verdict"] = verdict(report)
    args.out.with_suffix(".learn.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


MAX_TEST_DROP = 0.005  # a site model may cost the original test split at most half a point


def verdict(report: dict[str, Any]) -> str:
    """'better', or why the new model is not: it must gain on the held-out site items and keep the test split
    within MAX_TEST_DROP (both int8, both models on the same frames and photos)."""
    site, test = report["site_held_out"], report["test"]
    worse = []
    if site["after"]["top1"] <= site["before"]["top1"]:
        worse.append(f"held-out site items {site['before']['top1']:.4f} -> {site['after']['top1']:.4f}")
    if test["after"]["top1"] < test["before"]["top1"] - MAX_TEST_DROP:
        worse.append(f"test split {test['before']['top1']:.4f} -> {test['after']['top1']:.4f} (more than "
                     f"{MAX_TEST_DROP * 100:g} pp lower)")
    return "better" if not worse else "not better: " + "; ".join(worse)


def test_top1(model: Path, args: argparse.Namespace) -> float:
    """Int8 top-1 of ``model`` on the test photos the fine-tune validated on (``--test-photos``)."""
    from models.evaluate import tflite_probabilities
    from models.features import ViewSpec
    from models.split import read_manifest, select

    entries = finetune.every_nth(select(read_manifest(args.manifest), "test"), args.test_photos)
    labels = list(read_card(model).labels)
    truth = np.array([labels.index(e.label) for e in entries])
    probabilities = tflite_probabilities(model, args.data, entries, ViewSpec("test", "clean"), None)
    return round(float(np.mean(probabilities.argmax(1) == truth)), 4)


def read_token(path: Path | None) -> str | None:
    """The token in ``path`` (whitespace stripped), None without a file."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise LearnError(f"--token-file: cannot read {path}: {exc.strerror or exc}") from None
    if not token:
        raise LearnError(f"--token-file: {path} is empty")
    return token


def stage(url: str, token: str | None, model: Path) -> dict[str, Any]:
    """Upload the model, its card and its learn report to the bin as its shadow candidate; the bin's answer."""
    boundary = uuid.uuid4().hex
    parts = [("model", model), ("card", model.with_suffix(".json")), ("report", model.with_suffix(".learn.json"))]
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{path.name}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n"
        for name, path in parts) + f"--{boundary}--\r\n".encode()
    answer = json.loads(fetch(url, "/api/model/stage", token, body, f"multipart/form-data; boundary={boundary}"))
    return dict(answer)


def lines(report: dict[str, Any]) -> list[str]:
    """The report in a few lines."""
    site, test = report["site_held_out"], report["test"]
    labelled = ", ".join(f"{label} {n}" for label, n in report["labelled"].items())
    out = [
        f"labelled items: {sum(report['labelled'].values())} ({labelled})",
        f"held-out site items ({site['items']}, {site['frames']} frames), int8 top-1: {site['before']['model']} "
        f"{site['before']['top1']:.4f} -> {site['after']['model']} {site['after']['top1']:.4f}",
        f"test split ({test['images']} photos), int8 top-1: {fmt(test['before']['top1'])} -> "
        f"{fmt(test['after']['top1'])}",
        f"temperature {report['temperature']:.2f}; {report['minutes']:.1f} minutes",
        f"verdict: {report['verdict']}",
    ]
    if "staged" in report:
        out.append(f"staged on the bin as its shadow model: {report['staged'].get('message', '')}")
    return out


def fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.4f}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``smartbin learn``'s options."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--frames", type=Path, help="labelled frames: one sub-folder per class")
    source.add_argument("--from", dest="source", metavar="URL", help="a bin's page: its Teach tab's labels")
    parser.add_argument("--out", type=Path, required=True, help="the int8 model to write (card and report beside it)")
    parser.add_argument("--to", metavar="URL", default=None, help="stage the result on this bin as its shadow model")
    parser.add_argument("--token-file", type=Path, default=None, help="a file holding the bin's web.token")
    parser.add_argument("--force", action="store_true",
                        help="--to: stage the model even when it is not better (site items, test split)")
    parser.add_argument("--current", type=Path, default=finetune.SHIPPED,
                        help=f"the model the bin runs now (default {finetune.SHIPPED})")
    parser.add_argument("--base", type=Path, default=None, help="model to start from (default: as models.finetune)")
    dataset_arguments(parser)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"feature cache (default {DEFAULT_CACHE})")
    parser.add_argument("--work", type=Path, default=WORK, help=f"where a bin's frames are fetched to (default {WORK})")
    parser.add_argument("--held-out", type=float, default=HELD_OUT_SHARE, help="share of each class's items held out")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the fine-tune")
    parser.add_argument("--mix", type=float, default=3.0, help="original train photos per site frame per epoch")
    parser.add_argument("--belt-views", type=int, default=1, help="belt views of each original photo mixed in")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws and of dropout")
    parser.add_argument("--train-photos", type=int, default=None, help="train photos used (default all)")
    parser.add_argument("--test-photos", type=int, default=None, help="test photos validated on (default all)")
    parser.add_argument("--val-photos", type=int, default=None, help="val photos the temperature is fitted on")
    parser.add_argument("--calibration-count", type=int, default=300, help="conversion: calibration images")
    parser.add_argument("--max-drop", type=float, default=2.0, help="conversion: largest int8 top-1 drop in pp")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0 < args.held_out < 1 or args.epochs < 1 or args.mix < 0:
        parser.error("--held-out must be in (0, 1), --epochs ≥ 1, --mix ≥ 0")
    if args.source is not None and not args.source.startswith(("http://", "https://")):
        parser.error(f"--from must be the bin's page, http://HOST:PORT, not {args.source!r}")
    if args.to is not None and not args.to.startswith(("http://", "https://")):
        parser.error(f"--to must be the bin's page, http://HOST:PORT, not {args.to!r}")


def main(argv: list[str] | None = None, prog: str = "python -m models.learn") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        report = run(args)
    except SmartbinError as exc:
        print(f"smartbin learn: {exc}", file=sys.stderr)
        return 1
    for line in lines(report):
        print(line)
    print(f"wrote {args.out}, its card and {args.out.with_suffix('.learn.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
