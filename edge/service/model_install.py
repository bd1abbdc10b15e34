"""``smartbin model install | list | rollback``: a new model put on the bin only once it is checked, compared
with the running one on the bin's own labelled frames, and switched to atomically; the previous one kept.

Install checks the card (sealed for this file and label order, the edge's input contract), loads the model in
the real runtime and runs its probe, checks its labels against the configured bins, then classifies the labelled
frames (``smartbin frames OUT --labels CSV`` writes them, one sub-folder per class) with the current model and
the candidate, exactly as ``smartbin classify --frame`` does. A candidate more than ``max_drop`` percentage
points worse is refused with the figures unless forced. Then it is copied into the store
(``edge.model_store``), ``current`` points to it, and a running service is restarted with ``systemctl restart``
(SIGTERM: the item in hand is finished and recorded, gates safe; the new process loads the new model).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edge.classifier import Classifier
from edge.config import Settings
from edge.errors import ImageError, ModelError, SmartbinError
from edge.images import labelled_images, read_rgb
from edge.integrity import check_probe
from edge.model_store import ModelStore, Version
from edge.photo import PhotoClassifier
from edge.service.unit import UNIT, unit_state


class Refused(SmartbinError):
    """The candidate model did not pass (its reason is the message); nothing was changed."""


@dataclass(frozen=True)
class Score:
    """Top-1 of one model on the labelled frames."""

    correct: int
    frames: int

    @property
    def top1(self) -> float:
        return self.correct / self.frames if self.frames else 0.0

    def describe(self) -> str:
        return f"top-1 {self.top1:.3f} ({self.correct} of {self.frames})"


def checked(settings: Settings, model: Path, allow_unsealed: bool | None = None) -> str:
    """Load ``model`` as the sorter would (an unsealed card only with ``allow_unsealed``, default
    ``[model] allow_unsealed``) and check it against the config; its sha256. Raises Refused."""
    if allow_unsealed is None:
        allow_unsealed = settings.model.allow_unsealed
    try:
        with Classifier(model, 1, allow_unsealed) as classifier:
            check_probe(classifier)
            settings.check_labels(classifier.labels)
            assert classifier.sha256 is not None
            return classifier.sha256
    except SmartbinError as exc:
        raise Refused(f"refused {model.name}: {exc}") from None


def score(settings: Settings, model: Path, frames: Path) -> Score:
    """``model``'s top-1 on the labelled frames in ``frames`` (kept frames are the ROI already: no ROI here)."""
    photos = PhotoClassifier(settings.model_copy(update={
        "model": settings.model.model_copy(update={"path": model}),
        "camera": settings.camera.model_copy(update={"roi": None}),
    }), threads=None)
    correct = total = 0
    try:
        for path, label in labelled_images(frames):
            try:
                rgb = read_rgb(path)
            except ImageError:
                continue
            total += 1
            correct += photos.classify_rgb(rgb, as_frame=True)["label"] == label
    finally:
        photos.close()
    return Score(correct, total)


def install(settings: Settings, model: Path, frames: Path | None, max_drop_pp: float = 1.0,
            force: bool = False) -> list[str]:
    """Check, compare, store and switch to ``model``; the lines to print. Raises Refused."""
    if not model.is_file():
        raise Refused(f"refused: no model file {model}")
    sha256 = checked(settings, model)
    store = ModelStore(settings.records.database.parent)
    current = store.current()
    lines = [f"{model.name}: card, runtime, probe and labels OK (sha256 {sha256[:12]})"]
    if current is not None and current.key == sha256[:12]:
        raise Refused(f"refused {model.name}: it is the current version already ({current.key})")
    compared: dict[str, object] = {}
    if frames is not None:
        old, new = score(settings, settings.model.path, frames), score(settings, model, frames)
        if not new.frames:
            raise Refused(f"refused {model.name}: no readable labelled frames in {frames}")
        drop = (old.top1 - new.top1) * 100
        lines.append(f"on {new.frames} labelled frames: current {settings.model.path.name} {old.describe()}, "
                     f"candidate {new.describe()} ({-drop:+.1f} pp)")
        if drop > max_drop_pp and not force:
            raise Refused(f"refused {model.name}: {-drop:+.1f} pp top-1 on {new.frames} labelled frames "
                          f"({new.top1:.3f} vs {old.top1:.3f}), more than --max-drop {max_drop_pp:g} pp; "
                          "--force installs it anyway")
        compared = {"frames": new.frames, "top1_before": old.top1, "top1_after": new.top1}
    else:
        lines.append("not compared: no labelled frames given (--frames DIR, as `smartbin frames --labels` writes)")
    version = store.add(model, sha256)
    store.switch(version, {"action": "install", "to": version.key, "from": current.key if current else None,
                           "file": model.name, "sha256": sha256, "forced": force, **compared})
    lines.append(f"installed as version {version.key} in {store.root} (current)")
    return [*lines, reload_service()]


def rollback(settings: Settings) -> list[str]:
    """Switch back to the version that was current before this one; the lines to print."""
    store = ModelStore(settings.records.database.parent)
    current = store.current()
    previous = store.previous()
    assert current is not None
    store.switch(previous, {"action": "rollback", "to": previous.key if previous else None, "from": current.key})
    where = f"version {previous.key} ({previous.model.name})" if previous else "the configured (bundled) model"
    return [f"rolled back from version {current.key} to {where}", reload_service()]


def listing(settings: Settings) -> list[str]:
    """The installed versions, newest install last, the current one marked."""
    store = ModelStore(settings.records.database.parent)
    current = store.current()
    installs = {e["to"]: e for e in store.history() if e.get("action") == "install"}
    lines = [f"  {'version':<12}  {'installed':<19}  {'top-1 on frames':<16}  model"]
    for version in store.versions():
        entry = installs.get(version.key, {})
        lines.append(f"{'*' if current == version else ' '} {version.key:<12}  {stamp(entry.get('time')):<19}  "
                     f"{figures(entry):<16}  {model_name(version)}")
    if current is None:
        lines.append(f"* {'(none)':<12}  {'':<19}  {'':<16}  {settings.model.path} (configured or bundled)")
    staged = store.staged()
    if staged is not None:
        lines.append(f"  staged: {staged.name} (from `smartbin learn --to`; runs as the shadow model until installed)")
    history = store.history()[-HISTORY:]
    if history:
        lines.append(f"history (latest {len(history)}):")
        lines += [f"  {stamp(entry.get('time'))}  {change(entry)}" for entry in history]
    return lines


HISTORY = 10  # the latest changes `model list` shows


def change(entry: dict[str, object]) -> str:
    """One history entry as words: 'install 3f2a9c0d1e4b (from 9d1e…, via page)'."""
    action = str(entry.get("action"))
    target = entry.get("to") or entry.get("file") or ""
    extras = [f"from {entry['from']}" if entry.get("from") else "",
              "automatic" if entry.get("auto") else "", f"via {entry['via']}" if entry.get("via") else ""]
    said = ", ".join(e for e in extras if e)
    return f"{action} {target}".strip() + (f" ({said})" if said else "")


def model_name(version: Version) -> str:
    try:
        return version.model.name
    except SmartbinError as exc:
        return str(exc)


def figures(entry: dict[str, object]) -> str:
    before, after = entry.get("top1_before"), entry.get("top1_after")
    if not isinstance(before, float) or not isinstance(after, float):
        return "not compared"
    return f"{after:.3f} (was {before:.3f})" + (" forced" if entry.get("forced") else "")


def stamp(when: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if isinstance(when, float) else "?"


def reload_service() -> str:
    """Restart the running service so that it loads the current model; what was done, as one line."""
    unit = unit_state()
    if unit is None or not unit.holds_devices:
        return "the service is not running: its next start uses this model"
    done = subprocess.run(["systemctl", "restart", UNIT], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ModelError(f"model switched, but `systemctl restart {UNIT}` failed: {done.stderr.strip()} "
                         "(restart it by hand)")
    return (f"restarted {UNIT} (SIGTERM: the item in hand was finished and recorded, gates safe; "
            "the new process runs this model)")
