"""``smartbin safe``: every gate to its safe position, also when the config is broken.

``systemd``'s ``ExecStopPost`` runs this after any exit of the service, a kill -9 included. An operator may be
editing the config at that moment, so a config that does not validate must not leave a relay pushing: the
running service keeps the gates it drove (``LAST_GOOD``, beside its records), and ``safe`` falls back to
those, and to every gate of the broken file that still reads as a gate, each driven to safe on its own. The
kept gates are looked up beside the broken file's ``records.path`` when it parses, else in the default state
folder (``$STATE_DIRECTORY``: the service's).
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpiozero import Factory
from pydantic import TypeAdapter, ValidationError

from edge.config import Gate, RecordSettings, RelayGate, ServoGate, Settings
from edge.gates import build_gate

logger = logging.getLogger(__name__)

LAST_GOOD = "last-good-gates.json"
GATE = TypeAdapter(Gate)


def remember_gates(settings: Settings) -> None:
    """Keep the gates (and pin factory) of a config that validated, for ``safe`` after a config edit."""
    path = settings.records.database.parent / LAST_GOOD
    snapshot = {"pin_factory": settings.gpio.pin_factory,
                "gates": {name: gate.model_dump() for name, gate in settings.gates.items()}}
    try:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(snapshot, indent=1), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        logger.warning("could not keep the gates for `smartbin safe` in %s: %s", path, exc)


def drive_safe(gates: Mapping[str, ServoGate | RelayGate], factory: Factory) -> list[str]:
    """Build each gate in its safe position and release it; one gate's failure does not stop the others.
    Returns the gates that failed (empty: all safe)."""
    failed = []
    for name, gate in gates.items():
        try:
            build_gate(gate, factory).close()
        except Exception as exc:
            logger.error("gate %s (GPIO%d) could not be driven to safe: %s", name, gate.pin, exc)
            failed.append(name)
    return failed


def gates_despite(config: Path | None) -> tuple[str, dict[str, ServoGate | RelayGate], str]:
    """For a config that does not validate: (pin factory, gates, where they came from). The last good gates the
    service kept, then each gate table of the broken file that reads as a gate (leniently) on a pin not yet
    taken."""
    raw = _raw_toml(config)
    records = raw.get("records")
    path = records.get("path") if isinstance(records, dict) else None
    folders = [Path(path).parent] if isinstance(path, str) else []
    folders.append(RecordSettings().database.parent)
    pin_factory, sources = "auto", []
    gates: dict[str, ServoGate | RelayGate] = {}
    for folder in folders:
        snapshot = _read_snapshot(folder / LAST_GOOD)
        if snapshot is not None:
            pin_factory, gates = snapshot
            sources.append(f"the last good config ({folder / LAST_GOOD})")
            break
    pins = {gate.pin for gate in gates.values()}
    tables = raw.get("gates")
    tables = tables if isinstance(tables, dict) else {}
    found = 0
    for name, table in tables.items():
        try:
            gate = GATE.validate_python(table, strict=False)
        except ValidationError:
            logger.warning("gates.%s of the broken config does not read as a gate: skipped", name)
            continue
        if gate.pin not in pins:
            gates[f"{name} (broken config)" if name in gates else name] = gate
            pins.add(gate.pin)
            found += 1
    if found:
        sources.append(f"{found} gate(s) of the broken config")
    return pin_factory, gates, " and ".join(sources) or "nowhere"


def _raw_toml(config: Path | None) -> dict[str, Any]:
    if config is None:
        return {}
    try:
        return tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _read_snapshot(path: Path) -> tuple[str, dict[str, ServoGate | RelayGate]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["pin_factory"]), {name: GATE.validate_python(g) for name, g in data["gates"].items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("%s is unreadable: %s", path, exc)
        return None
