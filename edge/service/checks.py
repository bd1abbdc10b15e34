"""``smartbin check``: each part of the bin tried once, one line each (name, ok, detail)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge.classifier import Classifier
from edge.config import DEFAULT_CONFIG, Settings
from edge.errors import SmartbinError
from edge.footprint import check_footprint
from edge.gates import GateBank
from edge.integrity import check_probe
from edge.pins import board_model, make_pin_factory
from edge.records import Records
from edge.sources import FrameStream, open_source

Check = tuple[str, bool, str]


def run_checks(settings: Settings, config_path: Path | None) -> list[Check]:
    """Config (already valid when this runs), memory (the frames' footprint against the machine's), model,
    gates, records, camera."""
    results: list[Check] = [("config", True, f"{config_path or DEFAULT_CONFIG} ({len(settings.bins)} bins, "
                                              f"{len(settings.gates)} gates)")]
    for name, check in (("memory", check_footprint), ("model", check_model), ("gates", check_gates),
                        ("records", check_records), ("camera", check_camera)):
        results.append((name, *attempt(check, settings)))
    return results


def attempt(check: Callable[[Settings], str], settings: Settings) -> tuple[bool, str]:
    try:
        return True, check(settings)
    except (SmartbinError, OSError) as exc:
        return False, str(exc)


def check_model(settings: Settings) -> str:
    with Classifier(settings.model.path, settings.model.threads or None, settings.model.allow_unsealed) as classifier:
        settings.check_labels(classifier.labels)
        probe = check_probe(classifier)
        width, height = classifier.input_size
        return (f"{classifier.path.name}: {len(classifier.labels)} classes, {width}x{height} uint8, "
                f"{classifier.runtime}; every class has a bin; {probe}")


def check_gates(settings: Settings) -> str:
    factory = make_pin_factory(settings.gpio.pin_factory)
    with GateBank(settings, factory):
        where = board_model() or "not a Raspberry Pi"
        gates = ", ".join(f"{n} {g.kind} GPIO{g.pin}" for n, g in settings.gates.items())
        return f"{gates} on {type(factory).__name__} ({where}); safe position → {settings.default_bin}"


def check_records(settings: Settings) -> str:
    with Records(settings.records.database) as records:
        count = records.total()
        return f"{records.path} writable ({count} items recorded)"


def check_camera(settings: Settings) -> str:
    with open_source(settings) as source:
        stream = FrameStream(source, settings.camera.stall_timeout_s).start()
        try:
            frame = next(iter(stream), None)
        finally:
            stream.stop()
        if frame is None:
            raise OSError(f"{source.name} gave no frame")
        height, width = frame.rgb.shape[:2]
        return f"{source.name}: {width}x{height} frame; {blur_budget(settings)}"


def blur_budget(settings: Settings) -> str:
    """The motion blur the config gives, with a warning above ``camera.max_blur_px``."""
    camera, speed = settings.camera, settings.conveyor.belt_speed_m_s
    blur = camera.blur_px(speed)
    exposure = f"{camera.exposure_us} us" if camera.exposure_us else "automatic, ~10 ms"
    line = (f"motion blur {blur:.1f} px ({speed:g} m/s x exposure {exposure} x "
            f"{camera.width / camera.view_m:.0f} px/m)")
    if blur > camera.max_blur_px:
        line += (f"; WARNING: over camera.max_blur_px {camera.max_blur_px:g}: set camera.exposure_us to "
                 f"{int(camera.max_blur_px * camera.view_m / (speed * camera.width) * 1e6)} or less")
    return line
