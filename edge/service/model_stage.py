"""A candidate model staged from the page: received from ``smartbin learn --to``, checked as ``smartbin model
install`` checks a model, run as the shadow model, compared with the current one on the site's labelled frames
it was not trained on, then installed (with today's trial and automatic rollback) or discarded.

    POST /api/model/stage     multipart: ``model`` (.tflite), ``card`` (.json), ``report`` (its .learn.json)
    POST /api/model/install   {"sha256": the staged candidate's}: install it
    POST /api/model/rollback  back to the version before the current one

Every step is a line of the store's history (``smartbin model list``), with ``"via": "page"``.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from edge.config import Settings
from edge.errors import SmartbinError
from edge.integrity import sealed
from edge.model_card import read_card, sha256_of
from edge.model_store import ModelStore
from edge.records import Records
from edge.service.model_install import Refused, checked, score

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.tflite$")
COMPARED = "compared.json"


def stage(settings: Settings, name: str, model: bytes, card: bytes, report: bytes | None) -> dict[str, Any]:
    """Check the uploaded model in a scratch folder, then make it the staged candidate. Raises Refused (one
    line) with nothing changed."""
    if not NAME.match(name):
        raise Refused(f"refused {name!r}: a model's file name is letters, digits, '.', '_' or '-', ending .tflite")
    files = {name: model, name.removesuffix(".tflite") + ".json": card}
    if report is not None:
        try:
            json.loads(report)
        except ValueError:
            raise Refused("refused: the learn report is not JSON") from None
        files[name.removesuffix(".tflite") + ".learn.json"] = report
    with tempfile.TemporaryDirectory(prefix="smartbin-stage-") as scratch:
        for file, payload in files.items():
            (Path(scratch) / file).write_bytes(payload)
        try:
            candidate = read_card(Path(scratch) / name)
        except SmartbinError as exc:
            raise Refused(f"refused {name}: {exc}") from None
        if not sealed(candidate):  # a model from the network is only run where its card can check it
            raise Refused(f"refused {name}: its card is not sealed (no integrity section): `smartbin learn` and "
                          "`python -m convert` write sealed cards ([model] allow_unsealed does not apply here)")
        sha256 = checked(settings, Path(scratch) / name, allow_unsealed=False)
    if sha256 == sha256_of(settings.model.path):
        raise Refused(f"refused {name}: it is the model running now ({settings.model.path.name})")
    store = ModelStore(settings.records.database.parent)
    path = store.stage(files)
    store.note({"action": "stage", "via": "page", "file": name, "sha256": sha256})
    return {"file": name, "sha256": sha256, "message": f"{name} staged (sha256 {sha256[:12]}): card, runtime, probe "
                                                          "and labels OK; it runs as the shadow model",
            "path": str(path)}


def staged_facts(settings: Settings) -> dict[str, Any] | None:
    """The staged candidate: file, sha256, its learn report's figures, and the comparison on labelled frames
    (None while it runs); None when nothing is staged."""
    store = ModelStore(settings.records.database.parent)
    model = store.staged()
    if model is None:
        return None
    try:
        sha256 = read_card(model).extra.get("integrity", {}).get("tflite_sha256")
    except SmartbinError as exc:
        return {"file": model.name, "error": str(exc)}
    report = read_json(model.with_suffix(".learn.json"))
    learnt = {key: report[key] for key in ("site_held_out", "test", "labelled", "minutes") if key in report}
    return {"file": model.name, "sha256": sha256, "learn": learnt,
            "compared": read_json(model.parent / COMPARED) or None}


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def untrained_labels(model: Path, records: Records) -> list[tuple[int, str]]:
    """The labelled items (id, class) the staged model was not trained on (its report's ``trained_items``)."""
    trained = {str(item) for item in read_json(model.with_suffix(".learn.json")).get("trained_items", [])}
    labels = set(read_card(model).labels)
    rows = records.query("SELECT item_id, label FROM labels ORDER BY item_id")
    return [(int(r["item_id"]), str(r["label"])) for r in rows
            if r["label"] in labels and str(r["item_id"]) not in trained]


def compare(settings: Settings) -> dict[str, Any]:
    """Top-1 of the current model and of the staged one on the labelled frames it was not trained on (each
    through ``smartbin classify --frame``'s path); written beside the candidate. Raises SmartbinError."""
    store = ModelStore(settings.records.database.parent)
    model = store.staged()
    if model is None:
        raise SmartbinError("no staged model to compare")
    with Records(settings.records.database) as records:
        labelled = untrained_labels(model, records)
    with tempfile.TemporaryDirectory(prefix="smartbin-compare-") as scratch:
        found = 0
        for item_id, label in labelled:
            frame = settings.retrain_folder / f"{item_id:08d}.jpg"
            if frame.is_file():
                (Path(scratch) / label).mkdir(exist_ok=True)
                (Path(scratch) / label / frame.name).symlink_to(frame.resolve())
                found += 1
        if found:
            current = score(settings, settings.model.path, Path(scratch))
            candidate = score(settings, model, Path(scratch))
            result: dict[str, Any] = {"frames": candidate.frames, "current": round(current.top1, 4),
                                      "candidate": round(candidate.top1, 4), "current_model": settings.model.path.name}
        else:
            result = {"frames": 0, "current": None, "candidate": None, "current_model": settings.model.path.name}
    if store.staged() == model:  # not replaced meanwhile
        (model.parent / COMPARED).write_text(json.dumps(result), encoding="utf-8")
    return result


def compare_later(settings: Settings, done: threading.Event | None = None) -> threading.Thread:
    """``compare`` in a thread of its own (the page answers at once); a failure is written as the result."""

    def work() -> None:
        try:
            compare(settings)
        except SmartbinError as exc:
            model = ModelStore(settings.records.database.parent).staged()
            if model is not None:
                (model.parent / COMPARED).write_text(json.dumps({"error": str(exc)}), encoding="utf-8")
        finally:
            if done is not None:
                done.set()

    thread = threading.Thread(target=work, name="compare", daemon=True)
    thread.start()
    return thread


def install_staged(settings: Settings, sha256: str) -> str:
    """Install the staged candidate (it must be the one named by ``sha256``: the page confirmed that one) as
    ``smartbin model install`` does, with its comparison in the history; one line. Raises Refused."""
    store = ModelStore(settings.records.database.parent)
    model = store.staged()
    facts = staged_facts(settings)
    if model is None or facts is None:
        raise Refused("refused: no model is staged (stage one with `smartbin learn --to`)")
    if not sha256 or facts.get("sha256") != sha256:
        raise Refused(f"refused: the staged model is {str(facts.get('sha256'))[:12]}, not {sha256[:12]!r} (reload "
                      "the page)")
    checked(settings, model, allow_unsealed=False)
    current = store.current()
    compared = facts.get("compared") or {}
    version = store.add(model, sha256)
    entry = {"action": "install", "via": "page", "to": version.key, "from": current.key if current else None,
             "file": model.name, "sha256": sha256, "forced": False}
    if isinstance(compared.get("candidate"), float):
        entry |= {"frames": compared["frames"], "top1_before": compared["current"],
                  "top1_after": compared["candidate"]}
    store.switch(version, entry)
    store.unstage()
    return f"installed {model.name} as version {version.key}: on trial for its first {settings.model.trial_items} items"


def rollback(settings: Settings) -> str:
    """Back to the version current before this one; one line. Raises SmartbinError when there is none."""
    store = ModelStore(settings.records.database.parent)
    current = store.current()
    previous = store.previous()
    assert current is not None
    store.switch(previous, {"action": "rollback", "via": "page", "to": previous.key if previous else None,
                            "from": current.key})
    where = f"version {previous.key}" if previous else "the configured (bundled) model"
    return f"rolled back from version {current.key} to {where}"


def discard(settings: Settings) -> str:
    """Remove the staged candidate; one line."""
    store = ModelStore(settings.records.database.parent)
    model = store.staged()
    if model is None:
        raise Refused("no model is staged")
    store.unstage()
    store.note({"action": "unstage", "via": "page", "file": model.name})
    return f"{model.name} discarded"
