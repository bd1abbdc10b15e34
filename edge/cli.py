"""The ``smartbin`` command: run, check, classify, gate, safe, bench, tune, frames, learn, status, web. Parses
arguments, loads settings, hands over; errors become one line on stderr and an exit code (2 for configuration
errors)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from edge import __version__
from edge.bench.command import HELP as BENCH_HELP
from edge.bench.command import add_arguments as bench_arguments
from edge.bench.tune import HELP as TUNE_HELP
from edge.bench.tune import add_arguments as tune_arguments
from edge.config import DEFAULT_CONFIG, RelayGate, ServoGate, Settings, load_settings
from edge.errors import ConfigError, GateError, SmartbinError
from edge.footprint import check_footprint
from edge.pins import make_pin_factory
from edge.service.logs import configure_logging, error_prefix
from edge.service.safe import drive_safe, gates_despite
from edge.service.serve import serve, stop_on_signals
from edge.service.unit import refuse_beside_service, unit_state
from edge.sources import SPEC_HELP

logger = logging.getLogger("smartbin")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smartbin`` console script."""
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["learn"]:  # its options are models.learn's, parsed where TensorFlow is
        return learn(given[1:])
    parser = build_parser()
    args = parser.parse_args(given)
    configure_logging(args.verbose, sys.stdout)
    try:
        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            if args.command is not cmd_safe:
                raise
            return safe_despite(exc, args)
        return int(args.command(settings, args) or 0)
    except SmartbinError as exc:
        print(f"{error_prefix(sys.stderr)}smartbin: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartbin", description="Edge waste sorter: camera → model → gates.")
    parser.add_argument("--version", action="version", version=f"smartbin {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[Settings, argparse.Namespace], int], help_text: str
                ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", type=Path, default=None,
                         help=f"TOML settings (default: the embedded {DEFAULT_CONFIG.name}: belt simulator)")
        sub.set_defaults(command=handler)
        return sub

    run = command("run", cmd_run, "sort items until Ctrl-C / SIGTERM or --max-items")
    run.add_argument("--source", help=f"override camera.source: {SPEC_HELP}")
    run.add_argument("--max-items", type=int, default=None, metavar="N", help="stop after N items")
    run.add_argument("--camera-wait", type=float, default=0.0, metavar="S",
                     help="wait up to S seconds for a live camera that is not there at start (the service: 30)")
    command("check", cmd_check, "check config, model, gates, records and camera: one line each")
    classify = command("classify", cmd_classify, "the sorter's model, crop and decision on photos: one line each")
    classify.add_argument("photos", type=Path, nargs="+", metavar="PHOTO", help="image files")
    classify.add_argument("--frame", action="store_true",
                          help="each photo is a camera frame: the camera's ROI and crop (camera.crop, default "
                          "the item); without it, a photo of the item (its centre square)")
    classify.add_argument("--json", action="store_true",
                          help="one JSON object per line: path, label, confidence, bin, rejected, reason, "
                               "expected_cost, top_k")
    gate = command("gate", cmd_gate, "move the gates to a bin by hand (installation), then back to safe")
    gate.add_argument("bin", help="bin name from the config")
    gate.add_argument("--hold", type=float, default=2.0, metavar="S", help="seconds to hold (default 2)")
    command("safe", cmd_safe, "every gate to its safe position (the service's ExecStopPost, after any exit)")
    bench_arguments(command("bench", cmd_bench, BENCH_HELP))
    tune_arguments(command("tune", cmd_tune, TUNE_HELP))
    fleet = command("fleet", cmd_fleet, "the fleet on the MQTT broker: every bin's state, or its items into "
                                         "PostgreSQL")
    fleet.add_argument("action", choices=["status", "collect"],
                       help="status: a table of every bin seen on the broker; collect: every bin's items into --db")
    fleet.add_argument("--broker", default=None, metavar="HOST[:PORT]",
                       help="the broker (default: mqtt.host and mqtt.port of the config; TLS and user from it)")
    fleet.add_argument("--wait", type=float, default=2.0, metavar="S",
                       help="status: seconds to gather the bins' retained messages (default 2)")
    fleet.add_argument("--db", default=None, metavar="DSN",
                       help="collect: PostgreSQL connection string, e.g. postgresql://fleet@db.lan/fleet")
    frames = command("frames", cmd_frames, "export kept frames of uncertain items for labelling and retraining")
    frames.add_argument("out", type=Path, help="output folder")
    given = frames.add_mutually_exclusive_group()
    given.add_argument("--labels", type=Path, default=None, metavar="CSV",
                       help="id,label CSV filled in by you; without it a labels.csv to fill in is written to OUT")
    given.add_argument("--labelled", action="store_true",
                       help="the frames labelled on the web page (Teach tab): OUT/<label>/ and OUT/labels.csv")
    status = command("status", cmd_status, "the service's state, today's items per bin, the latest error, the "
                     "last items (default: the installed service's records)")
    status.add_argument("--last", type=int, default=10, metavar="N", help="items to list (default 10)")
    command("web", cmd_web, "the web page on the records alone, without the sorter (default: the installed "
            "service's config and records)")
    camera = command("camera", cmd_camera, "the Pi camera on the empty belt: measure exposure, gain and white "
                     "balance, print the [camera] lines to paste, save a frame")
    camera.add_argument("action", choices=["calibrate"])
    camera.add_argument("--seconds", type=float, default=3.0, metavar="S", help="settling time (default 3)")
    camera.add_argument("--out", type=Path, default=Path("calibration.jpg"), metavar="FILE",
                        help="where to save the frame (default calibration.jpg)")
    commands.add_parser("learn", help=LEARN_HELP, description=LEARN_HELP, add_help=False)
    model = command("model", cmd_model, "models on this bin: install a new one (checked, compared, switched "
                    "atomically), list the versions, roll back (default: the installed service's config)")
    model.add_argument("action", choices=["install", "list", "rollback"])
    model.add_argument("file", type=Path, nargs="?", metavar="FILE.tflite", help="install: the model (card beside)")
    model.add_argument("--frames", type=Path, default=None, metavar="DIR",
                       help="install: labelled frames (one sub-folder per class) to compare the models on")
    model.add_argument("--max-drop", type=float, default=1.0, metavar="PP",
                       help="install: refuse a model this many percentage points worse on the frames (default 1)")
    model.add_argument("--force", action="store_true", help="install: even if it is worse on the frames")
    return parser


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    if args.source:
        settings = settings.model_copy(update={"camera": settings.camera.model_copy(update={"source": args.source})})
    refuse_beside_service(settings.gpio.pin_factory, settings.camera.source)
    check_footprint(settings)  # frames this machine cannot hold: refused before anything starts

    def reload() -> Settings:  # after a model change on the page: the config read again, as at the start
        again = load_settings(args.config)
        if args.source:
            again = again.model_copy(update={"camera": again.camera.model_copy(update={"source": args.source})})
        return again

    return serve(settings, args.max_items, camera_wait_s=max(0.0, args.camera_wait), reload=reload)


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from edge.service.checks import run_checks

    results = run_checks(settings, args.config)
    for name, ok, detail in results:
        print(f"{name:<8} {'OK  ' if ok else 'FAIL'} {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


def cmd_classify(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from edge.errors import ImageError
    from edge.images import read_rgb
    from edge.photo import PhotoClassifier

    failed = 0
    photos = PhotoClassifier(settings, settings.model.threads or None)
    try:
        for path in args.photos:
            try:
                result = photos.classify_rgb(read_rgb(path), as_frame=args.frame)
            except ImageError as exc:
                failed += 1
                print(f"{path}: {exc}", file=sys.stderr)
                continue
            top = [[label, round(p, 4)] for label, p in result["top_k"][:3]]
            if args.json:
                keys = ("label", "confidence", "bin", "rejected", "reason", "expected_cost")
                print(json.dumps({"path": str(path), **{k: result[k] for k in keys}, "top_k": top}), flush=True)
            else:
                verdict = f"{'rejected' if result['rejected'] else 'sorted'}: {result['reason']}"
                others = ", ".join(f"{label} {p:.2f}" for label, p in top)
                print(f"{path}: {result['label']} {result['confidence']:.2f} → {result['bin']} [{verdict}] "
                      f"(top-3: {others})", flush=True)
    finally:
        photos.close()
    return 1 if failed else 0


def cmd_gate(settings: Settings, args: argparse.Namespace) -> int:
    from edge.gates import GateBank

    if args.bin not in settings.bins:
        print(f"smartbin: no bin {args.bin!r}; bins: {', '.join(settings.bins)}", file=sys.stderr)
        return 2
    refuse_beside_service(settings.gpio.pin_factory)
    factory = make_pin_factory(settings.gpio.pin_factory)
    with GateBank(settings, factory) as gates:
        route = gates.set_route(args.bin)
        print(f"{args.bin}: {route.describe()} for {args.hold:g} s ({type(factory).__name__})")
        time.sleep(args.hold)
    print("gates back to safe")
    return 0


def cmd_safe(settings: Settings, args: argparse.Namespace) -> int:
    return safe_gates(settings.gpio.pin_factory, settings.gates, f"to {settings.default_bin}")


def safe_despite(error: ConfigError, args: argparse.Namespace) -> int:
    """``smartbin safe`` with a config that does not validate: the last good gates and those of the broken file.
    Exit 0 once every gate found is safe (the config error stays on stderr), 2 if no gate was found at all."""
    print(f"{error_prefix(sys.stderr)}smartbin: {error}; driving the gates found to safe", file=sys.stderr)
    pin_factory, gates, found_in = gates_despite(args.config)
    if not gates:
        return error.exit_code
    return safe_gates(pin_factory, gates, f"from {found_in}")


def safe_gates(pin_factory: str, gates: Mapping[str, ServoGate | RelayGate], where: str) -> int:
    refuse_beside_service(pin_factory)
    failed = drive_safe(gates, make_pin_factory(pin_factory))
    if failed:
        raise GateError(f"gates not driven to safe: {', '.join(failed)}")
    print(f"gates safe: {', '.join(gates) or 'none'} ({where})")
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from edge.bench.command import run_command

    return run_command(settings, args)


def cmd_tune(settings: Settings, args: argparse.Namespace) -> int:
    from edge.bench.tune import run_command

    return run_command(settings, args)


def cmd_fleet(settings: Settings, args: argparse.Namespace) -> int:
    from edge.fleet.status import collect, render, table

    host, port = settings.mqtt.host, settings.mqtt.port
    if args.broker:
        host, _, given = args.broker.partition(":")
        if given:
            if not given.isdigit() or not 0 < int(given) < 65536:
                raise ConfigError(f"--broker: not a port: {given!r}")
            port = int(given)
    if args.action == "collect":
        from edge.fleet.collect import Collector

        if not args.db:
            raise ConfigError("fleet collect: --db postgresql://… is required")
        collector = Collector(settings.mqtt, host, port, args.db)
        stop = threading.Event()
        with stop_on_signals(stop):
            logger.info("collecting every bin's items from %s:%d into %s", host, port, args.db.split("@")[-1])
            collector.run(stop)
        logger.info("collected %d items (%d repeats ignored)", collector.inserted, collector.repeated)
        return 0
    bins = collect(settings.mqtt, host, port, args.wait)
    if not bins:
        print(f"no bin has published on {host}:{port} under {settings.mqtt.prefix}/")
        return 1
    print(render(table(bins)))
    return 0


LEARN_HELP = ("teach the model this site's belt from the frames labelled on the page: fine-tune, convert, "
              "calibrate, report, and stage it on the bin (a workstation: `smartbin learn --help` there)")


def learn(argv: list[str]) -> int:
    """``smartbin learn``: hands over to ``models.learn`` where the workstation extras are, else says what to
    install in one line (exit 2). The edge itself never imports TensorFlow."""
    import importlib.util

    missing = [name for name in ("tensorflow", "keras", "models") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"smartbin learn: needs the workstation extras ({', '.join(missing)} missing here): run it from a "
              "smartbin checkout set up with `./setup.sh --dev` (a workstation, or a Pi 5 with 8 GB)",
              file=sys.stderr)
        return 2
    from models.learn import main as learn_main

    return learn_main(argv, prog="smartbin learn")


def cmd_frames(settings: Settings, args: argparse.Namespace) -> int:
    from edge.model_card import read_card
    from edge.retrain import export, export_labelled

    settings = installed_records(settings, args)
    labels = read_card(settings.model.path).labels
    if args.labelled:
        print(export_labelled(settings.retrain_folder, args.out, settings.records.database, labels))
    else:
        print(export(settings.retrain_folder, args.out, args.labels, labels))
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from edge.service.status import database_for, report, spill_for

    given = args.config is not None
    print("\n".join(report(database_for(settings, given), args.last, unit_state(), spill=spill_for(settings, given))))
    return 0


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    from edge.web import WebServer

    settings = installed_records(settings, args)
    stop = threading.Event()
    with stop_on_signals(stop), WebServer(settings):
        logger.info("serving the records of %s without the sorter (no live frame); Ctrl-C to stop",
                    settings.records.database)
        stop.wait()
    return 0


def installed_records(settings: Settings, args: argparse.Namespace) -> Settings:
    """Without ``--config`` where the service is installed: its config and the records (and kept frames) it
    writes, in its state directory unless its config names another (``sudo smartbin web``, ``frames``)."""
    from edge.service import unit
    from edge.service.status import database_for

    if args.config is None and unit.CONFIG.exists():
        settings = load_settings(unit.CONFIG)
    database = database_for(settings, args.config is not None, unit.CONFIG, unit.STATE)
    return settings.model_copy(update={"records": settings.records.model_copy(update={"path": database})})


def cmd_camera(settings: Settings, args: argparse.Namespace) -> int:
    from edge.service.camera_calibrate import calibrate

    refuse_beside_service(settings.gpio.pin_factory, settings.camera.source)
    print("\n".join(calibrate(settings, max(0.0, args.seconds), args.out)))
    return 0


def cmd_model(settings: Settings, args: argparse.Namespace) -> int:
    from edge.model_store import ModelStore
    from edge.service import model_install
    from edge.service.unit import CONFIG

    config = args.config if args.config is not None or not CONFIG.exists() else CONFIG
    if config is not args.config:
        settings = load_settings(config)
    if args.action == "install":
        if args.file is None:
            raise ConfigError("model install: name the FILE.tflite to install")
        lines = model_install.install(settings, args.file, args.frames, args.max_drop, args.force)
        now = load_settings(config).model.path  # what the service will run, read as it reads it
        if now.resolve() != ModelStore(settings.records.database.parent).current_model():
            lines.append(f"note: model.path in the config names {now}: the service runs that one, not the installed "
                         "version (remove model.path to run installed versions)")
    elif args.action == "rollback":
        lines = model_install.rollback(settings)
    else:
        lines = model_install.listing(settings)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
