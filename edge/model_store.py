"""Models as versions on the bin: each installed model in a folder of its own under the state folder, a
``current`` pointer switched atomically, and a history for rollback.

    STATE/models/
        3f2a9c0d1e4b/garbage12_resnet50_int8.tflite (+ .json card)   one folder per version (sha256, 12 hex)
        current -> 3f2a9c0d1e4b                                       a symlink, replaced by rename()
        history.jsonl                                                 one line per stage, install or rollback
        staged/M.tflite (+ .json card, + .learn.json report)          a candidate sent by `smartbin learn --to`,
                                                                      run as the shadow model until installed

A config that names no ``model.path`` runs the current version when there is one, else the bundled model.
Files are written to a temporary name and renamed into place, so that a sorter that has the old model mapped
keeps reading intact pages (overwriting a mapped model in place crashes that process with SIGBUS).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import SmartbinError

STORE = "models"
CURRENT = "current"
HISTORY = "history.jsonl"
STAGED = "staged"


@dataclass(frozen=True)
class Version:
    """One installed model: its folder (named by the first 12 hex digits of its sha256) and file."""

    folder: Path

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def model(self) -> Path:
        found = sorted(self.folder.glob("*.tflite"))
        if len(found) != 1:
            raise SmartbinError(f"{self.folder}: {len(found)} .tflite files, expected one")
        return found[0]


class ModelStore:
    """The versions under ``state/models``."""

    def __init__(self, state: Path) -> None:
        self.root = state / STORE

    def current(self) -> Version | None:
        """The version ``current`` points to, None when there is none (or it points nowhere)."""
        pointer = self.root / CURRENT
        if not pointer.is_symlink():
            return None
        folder = self.root / os.readlink(pointer)
        return Version(folder) if folder.is_dir() else None

    def current_model(self) -> Path | None:
        """The current version's model file (resolved), None if no version is current."""
        version = self.current()
        return version.model.resolve() if version is not None else None

    def versions(self) -> list[Version]:
        """Every installed version, oldest install first."""
        if not self.root.is_dir():
            return []
        folders = [p for p in self.root.iterdir()
                   if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name != STAGED]
        return [Version(p) for p in sorted(folders, key=lambda p: p.stat().st_mtime)]

    def history(self) -> list[dict[str, Any]]:
        """The installs and rollbacks, oldest first."""
        path = self.root / HISTORY
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def add(self, model: Path, sha256: str) -> Version:
        """Copy ``model`` and its card into a version folder (kept as it is if that version is there)."""
        folder = self.root / sha256[:12]
        if not folder.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            staging = self.root / f".{sha256[:12]}.{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for source in (model, model.with_suffix(".json")):
                shutil.copy2(source, staging / source.name)
                with open(staging / source.name, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(staging, folder)
        os.utime(folder)  # the newest install last in versions()
        return Version(folder)

    def staged(self) -> Path | None:
        """The staged candidate's model file, None when none is staged."""
        found = sorted((self.root / STAGED).glob("*.tflite"))
        return found[0] if len(found) == 1 else None

    def stage(self, files: dict[str, bytes]) -> Path:
        """Make ``files`` (names → contents: a model, its card, perhaps its report) the staged candidate, in
        one rename (a previous candidate is replaced); the model's path."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{STAGED}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name, payload in files.items():
            with open(staging / name, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
        self.unstage()
        os.replace(staging, self.root / STAGED)
        model = self.staged()
        assert model is not None
        return model

    def unstage(self) -> None:
        """Remove the staged candidate, if any."""
        folder = self.root / STAGED
        if folder.is_dir():
            gone = self.root / f".{STAGED}.gone.{os.getpid()}"
            os.replace(folder, gone)
            shutil.rmtree(gone, ignore_errors=True)

    def switch(self, version: Version | None, entry: dict[str, Any]) -> None:
        """Point ``current`` at ``version`` (None: no version, back to the configured or bundled model) in one
        rename, and append ``entry`` to the history."""
        self.root.mkdir(parents=True, exist_ok=True)
        pointer = self.root / CURRENT
        if version is None:
            pointer.unlink(missing_ok=True)
        else:
            staging = self.root / f".{CURRENT}.{os.getpid()}"
            staging.unlink(missing_ok=True)
            staging.symlink_to(version.key)
            os.replace(staging, pointer)
        self.note(entry)

    def note(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` to the history without switching (a trial's verdict)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / HISTORY).open("a", encoding="utf-8") as f:
            f.write(json.dumps({"time": time.time(), **entry}) + "\n")

    def on_trial(self, model: Path) -> dict[str, Any] | None:
        """The install entry of ``model`` if it is the current version and no verdict on it came since."""
        current = self.current()
        if current is None or model.resolve().parent != current.folder.resolve():
            return None
        history = self.history()
        latest = history[-1] if history else {}
        return latest if latest.get("action") == "install" and latest.get("to") == current.key else None

    def auto_rollback(self, within_s: float = 86_400.0) -> str | None:
        """What the latest automatic rollback said, if one happened within ``within_s`` seconds."""
        for entry in reversed(self.history()):
            if entry.get("auto") and time.time() - float(entry.get("time", 0)) < within_s:
                return str(entry.get("reason"))
        return None

    def previous(self) -> Version | None:
        """The version that was current before the current one (by the history), None for the configured or
        bundled model. Raises SmartbinError when there is nothing to roll back to."""
        current = self.current()
        if current is None:
            raise SmartbinError("no installed model is in use: nothing to roll back")
        for entry in reversed(self.history()):
            if entry.get("to") == current.key and entry.get("action") in ("install", "rollback"):
                before = entry.get("from")
                if before is None:
                    return None
                folder = self.root / before
                if not folder.is_dir():
                    raise SmartbinError(f"the previous version {before} is no longer in {self.root}")
                return Version(folder)
        return None


def installed_model(state: Path) -> Path | None:
    """The current version's model file, None if no version is current."""
    return ModelStore(state).current_model()


def staged_model(state: Path) -> Path | None:
    """The staged candidate's model file, None if none is staged."""
    return ModelStore(state).staged()
