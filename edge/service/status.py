"""``smartbin status``: the service's state (where systemd runs), today's items per bin, the latest error, a full
disk with the item records held meanwhile, and the last items, read from the item database without writing to it
(and from the runtime directory's ``held.json`` and spill file, ``edge.held``)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

from edge.config import Settings, load_settings
from edge.errors import ConfigError, RecordError
from edge.held import disk_state
from edge.loop import Tally, describe
from edge.model_store import ModelStore
from edge.records import ItemRecord, Records
from edge.service import unit as service
from edge.service.unit import UnitState
from edge.shadow import describe as describe_shadow
from edge.shadow import summary as shadow_summary


def database_for(settings: Settings, config_given: bool, service_config: Path = service.CONFIG,
                 service_state: Path = service.STATE) -> Path:
    """The records to read: the given config's; else, where the service is installed, the service's (its
    config's ``records.path``, else its state directory, also when that config is broken); else the embedded
    default's."""
    if config_given or not service_config.exists():
        return settings.records.database
    try:
        return load_settings(service_config).records.path or service_state / "items.db"
    except ConfigError:
        return service_state / "items.db"


def spill_for(settings: Settings, config_given: bool, service_config: Path = service.CONFIG,
              service_runtime: Path = service.RUNTIME) -> Path | None:
    """The spill file whose records (and ``held.json``) to report: as ``database_for`` chooses the config; the
    service's runtime directory where its config names none."""
    if config_given or not service_config.exists():
        return settings.records.spill_file
    try:
        spill = load_settings(service_config).records.spill
    except ConfigError:
        spill = None
    return spill or service_runtime / "held-records.jsonl"


def disk_lines(database: Path, spill: Path | None) -> list[str]:
    """A ``disk`` line where records are held or spilled: how many, since when, why; none otherwise."""
    disk = disk_state(database.parent, spill)
    lines = []
    if disk["held"]:
        why = "disk full" if disk["full"] else "database busy"
        since = clock(disk["held_since"] or 0)
        lines.append(f"disk       {why}: {disk['held']} item records held in memory since {since} "
                     f"({disk['free_mb']} MB free): {disk['refused']}")
    if disk["spilled"]:
        lines.append(f"disk       {disk['spilled']} held item records wait in {spill} for the next start")
    return lines


def report(database: Path, last: int, unit: UnitState | None, now: float | None = None,
           spill: Path | None = None) -> list[str]:
    """The lines ``smartbin status`` prints (``spill``: the spill file, see ``spill_for``). Raises RecordError if
    the database cannot be read."""
    unknown = "unknown here (no systemd, or smartbin.service not installed)"
    lines = [f"service    {unit.describe() if unit else unknown}"]
    try:
        if not database.exists():
            return [*lines, f"records    none yet: {database} does not exist"]
    except PermissionError:
        raise RecordError(f"cannot read {database}: permission denied (sudo smartbin status)") from None
    with Records(database, readonly=True) as records:
        total = records.total()
        today = records.today(now)
        error = records.last_error()
        recent = records.recent(last)
        shadow = shadow_summary(records)
    lines.append(f"records    {database}: {total} items")
    lines += disk_lines(database, spill)
    lines.append(f"today      {Tally(Counter(today)).summary() if today else 'no items yet'}")
    lines.append(f"last error {clock(error['time'])} item {error['id']}: {error['error']}" if error
                 else "last error none")
    if shadow is not None:
        lines.append(f"shadow     {describe_shadow(shadow)}")
    if (rolled := ModelStore(database.parent).auto_rollback()) is not None:
        lines.append(f"model      {rolled}")
    if recent:
        lines.append(f"last {len(recent)} items:")
        lines += [f"  {clock(row['time'])} {describe(row['id'], ItemRecord.from_row(row))}" for row in recent]
    return lines


def clock(t: float) -> str:
    """Local date and time of a Unix time."""
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")

