"""The report: ``report.json`` (every figure), ``report.md`` and the terminal (the same tables), and
``images-MODEL.csv`` (one row per image: truth, top 3, latencies per thread count)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bench.runner import Bench, ModelRun, Options
from edge.bench.timing import STAGES, stats

SCHEMA = "smartbin.bench-report/1"
NUMBER = re.compile(r"^(–|-?[\d.]+( %|×)?|)$")  # cells aligned right: numbers, percentages, ratios, blanks
MIB = 1024 * 1024
BUSY = 0.1  # share of the CPU taken by other processes during a pass above which its timings are flagged


def build(bench: Bench) -> dict[str, Any]:
    """Every figure of the run as one JSON-ready dict."""
    images = bench.image_set.images
    first = bench.models[0].passes[0]
    return {
        "schema": SCHEMA,
        "created": bench.created,
        "elapsed_s": round(bench.elapsed_s, 1),
        "platform": bench.platform,
        "settings": settings(bench.options),
        "images": {"root": str(bench.image_set.root), **bench.image_set.selection,
                   "readable": len(first.readable),
                   "unreadable": [{"path": image.relative, "error": error} for image, error in first.unreadable],
                   "per_folder": count_by([images[i].truth or "." for i in first.readable])},
        "models": [model_report(model, bench.options.votes) for model in bench.models],
        "comparison": comparison(bench.models),
    }


def settings(options: Options) -> dict[str, Any]:
    """The options of the run, paths as strings."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    found = {key: plain(value) for key, value in asdict(options).items() if key != "config"}
    if options.config is not None:
        costs = options.config.costs
        found["decisions"] = {"costs": costs.model_dump() if costs else None,
                              "quarantine_p": options.config.sorting.quarantine_p,
                              "hazardous": list(options.config.hazardous_classes),
                              "reject_bin": options.config.sorting.reject_bin}
    return found


def count_by(values: list[str]) -> dict[str, int]:
    """How often each value occurs, sorted by value."""
    unique, counts = np.unique(np.array(values, dtype=object), return_counts=True)
    return {str(u): int(c) for u, c in zip(unique, counts, strict=True)}


def model_report(model: ModelRun, votes: int) -> dict[str, Any]:
    """One model's figures: what it is, one entry per thread count (items/s: ``votes`` images per item), and
    its accuracy."""
    baseline = model.passes[0].probabilities.argmax(axis=1)
    runs = [{"threads": p.threads, "load_s": p.load_s, "images": len(p.readable),
             "latency_ms": {stage: stats(p.latency_ms[stage]) for stage in STAGES},
             "throughput_per_s": p.throughput, "items_per_s": p.throughput / votes,
             "rss_before_mib": None if p.rss_before_bytes is None else p.rss_before_bytes / MIB,
             "peak_rss_mib": p.peak_rss_bytes / MIB,
             "peak_rss_scope": p.peak_scope, "other_cpu_share": p.other_cpu_share,
             "top1_same_as_first_run": float(np.mean(p.probabilities.argmax(axis=1) == baseline))
             if len(baseline) else None}
            for p in model.passes]
    return {"name": model.name, **model.info, "calibration_temperature": model.temperature, "runs": runs,
            "accuracy": model.accuracy, **(model.sorting or {})}


def comparison(models: list[ModelRun]) -> list[dict[str, Any]]:
    """Each later model against the first at the same thread count: p50 invoke and throughput ratios."""
    base = {p.threads: p for p in models[0].passes}
    rows = []
    for model in models[1:]:
        for run in model.passes:
            if run.threads in base:
                ref = base[run.threads]
                rows.append({"model": model.name, "relative_to": models[0].name, "threads": run.threads,
                             "invoke_p50_ratio": p50(run) / p50(ref) if p50(ref) else None,
                             "throughput_ratio": run.throughput / ref.throughput if ref.throughput else None})
    return rows


def p50(run: Any) -> float:
    """Median invoke latency of a pass, ms (0 if no image was readable)."""
    values = run.latency_ms["invoke"]
    return float(np.median(values)) if values.size else 0.0


def write_json(report: dict[str, Any], path: Path) -> None:
    """report.json, indented."""
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_image_csv(bench: Bench, model: ModelRun, path: Path) -> None:
    """One row per readable image: path, truth, top 3 with probabilities, then invoke and total ms per pass."""
    images = bench.image_set.images
    first = model.passes[0]
    timing_columns = [f"{stage}_ms_t{p.threads}" for p in model.passes for stage in ("invoke", "total")]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "truth", "top1", "p1", "top2", "p2", "top3", "p3", *timing_columns])
        for row, index in enumerate(first.readable):
            top = [x for label, prob in first.top3[row] for x in (label, f"{prob:.4f}")]
            times = [f"{p.latency_ms[stage][row]:.3f}" for p in model.passes for stage in ("invoke", "total")]
            writer.writerow([images[index].relative, images[index].truth or "", *top, *times])


@dataclass(frozen=True)
class Table:
    """A titled table of strings."""

    title: str
    headers: list[str]
    rows: list[list[str]]


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal, '–' when undefined."""
    return "–" if value is None else f"{100 * value:.1f} %"


def ms(value: float | None) -> str:
    """Milliseconds: two decimals under 10 ms, one above."""
    return "–" if value is None else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def tables(report: dict[str, Any]) -> list[Table]:
    """The report's tables, for the terminal and report.md alike."""
    models = report["models"]
    found = [model_table(models), speed_table(report)]
    if any(m["accuracy"] for m in models):
        found += [accuracy_table(report), class_table(models), confusion_table(models)]
    sorted_models = [m for m in models if m.get("bins")]
    if sorted_models:
        found += [decision_table(sorted_models), *(bin_table(m) for m in sorted_models)]
    return found


def decision_table(models: list[dict[str, Any]]) -> Table:
    rows = []
    for m in models:
        for result, name in ((m, "configured"), (m["threshold_rule"], "threshold rule")):
            leak = f"{pct(result['hazardous_leak'])} ({result['hazardous_leaked']}/{result['hazardous_items']})"
            rows.append([m["name"], f"{name}: {result['rule']}", str(result["items"]), pct(result["right_bin"]),
                         pct(result["reject_rate"]), leak, f"{result['cost_per_1000']:.0f}"])
    return Table("Decisions: what lands where (rejects land in the reject bin; the threshold rule is that of "
                 "earlier releases, without [costs] or quarantine)",
                 ["model", "rule", "items", "right bin", "rejected", "hazardous leak", "cost / 1000 items"], rows)


def bin_table(model: dict[str, Any]) -> Table:
    old = model["threshold_rule"]["bins"]
    rows = [[name, str(b["belonging"]), str(b["items"]), pct(b["purity"]), pct(b["recall"]),
             str(old[name]["items"]), pct(old[name]["purity"]), pct(old[name]["recall"])]
            for name, b in model["bins"].items()]
    return Table(f"Bins of {model['name']}: configured rule | threshold rule",
                 ["bin", "belong", "items", "purity", "recall", "items (thr.)", "purity (thr.)", "recall (thr.)"],
                 rows)


def model_table(models: list[dict[str, Any]]) -> Table:
    rows = []
    for m in models:
        xnn, mem, cold = m["xnnpack"], m["memory"], m["cold_start"]
        delegated = (f"yes, {xnn['delegated_ops']}/{xnn['ops']} ops" if "ops" in xnn and xnn["in_use"]
                     else "yes" if xnn["in_use"] else "no")
        rows.append([m["name"], f"{m['size_bytes'] / MIB:.1f}", m["sha256"][:12], f"{cold['load_s']:.2f}",
                     ms(cold["first_invoke_ms"]), delegated, mib(mem["activation_peak_bytes"]),
                     mib(mem["weight_bytes"]), m["runtime"]])
    return Table("Models (cold start: first load in this process, first invoke)",
                 ["model", "file MiB", "sha256", "load s", "1st invoke ms", "XNNPACK", "activations MiB",
                  "weights MiB", "runtime"], rows)


def mib(value: int | None) -> str:
    """Bytes as MiB with one decimal (three under 1 MiB), '–' when unknown."""
    return "–" if value is None else f"{value / MIB:.1f}" if value >= MIB else f"{value / MIB:.3f}"


def speed_table(report: dict[str, Any]) -> Table:
    ratios = {(c["model"], c["threads"]): c["invoke_p50_ratio"] for c in report["comparison"]}
    rows = []
    for m in report["models"]:
        for run in m["runs"]:
            lat = run["latency_ms"]
            ratio = ratios.get((m["name"], run["threads"]))
            rows.append([m["name"], str(run["threads"]), ms(lat["preprocess"].get("p50")),
                         *(ms(lat["invoke"].get(k)) for k in ("p50", "p90", "p99", "max")),
                         ms(lat["postprocess"].get("p50")), ms(lat["total"].get("p50")), ms(lat["total"].get("p99")),
                         f"{run['throughput_per_s']:.1f}", f"{run['items_per_s']:.1f}", f"{run['peak_rss_mib']:.0f}",
                         *([] if not ratios else ["" if ratio is None else f"{ratio:.2f}×"])])
    headers = ["model", "thr", "pre p50", "invoke p50", "p90", "p99", "max", "post p50", "total p50", "total p99",
               "img/s", "items/s", "peak RSS MiB"]
    title = f"Speed, ms per image (decode excluded); items/s: img/s ÷ {report['settings']['votes']} frames per item"
    if ratios:
        headers.append("× first")
        title += f"; × first: invoke p50 as a multiple of {report['models'][0]['name']}'s"
    return Table(title, headers, rows)


def accuracy_table(report: dict[str, Any]) -> Table:
    threshold = report["settings"]["threshold"]
    rows = []
    for m in report["models"]:
        acc = m["accuracy"]
        if acc:
            at = acc["threshold"]
            rows.append([m["name"], str(acc["images"]), pct(acc["top1"]), pct(acc["top3"]), pct(acc["f1_weighted"]),
                         pct(at["rejected_share"]), pct(at["accepted_accuracy"]), pct(at["accepted_wrong_share"])])
    return Table(f"Accuracy (threshold {threshold:g}: below it → reject bin)",
                 ["model", "images", "top-1", "top-3", "F1 (weighted)", "rejected", "top-1 of the rest",
                  "accepted wrong"], rows)


def class_table(models: list[dict[str, Any]]) -> Table:
    scored = [m for m in models if m["accuracy"]]
    labels = list(dict.fromkeys(label for m in scored for label in m["accuracy"]["per_class"]))
    rows = []
    for label in labels:
        cells = [m["accuracy"]["per_class"].get(label) for m in scored]
        support = next(c["support"] for c in cells if c)
        rows.append([label, str(support)] + [x for c in cells for x in
                                             ((pct(c["precision"]), pct(c["recall"])) if c else ("", ""))])
    if len(scored) == 1:
        return Table("Per class", ["class", "images", "precision", "recall"], rows)
    legend = ", ".join(f"{i} = {m['name']}" for i, m in enumerate(scored, 1))
    headers = ["class", "images"] + [f"{x}{i}" for i in range(1, len(scored) + 1) for x in ("P", "R")]
    return Table(f"Per class: precision P and recall R of model {legend}", headers, rows)


def confusion_table(models: list[dict[str, Any]]) -> Table:
    rows = [[m["name"], c["truth"], c["predicted"], str(c["count"]), pct(c["share_of_truth"])]
            for m in models if m["accuracy"] for c in m["accuracy"]["top_confusions"][:5]]
    return Table("Most frequent mistakes", ["model", "truth", "predicted as", "images", "share of truth"], rows)


def as_text(table: Table) -> str:
    """The table aligned in columns for the terminal."""
    grid = [table.headers, *table.rows]
    widths = [max(len(row[i]) for row in grid) for i in range(len(table.headers))]
    right = [all(NUMBER.match(row[i]) for row in table.rows) for i in range(len(table.headers))]
    lines = [table.title] + ["  ".join(cell.rjust(w) if r else cell.ljust(w)
                                       for cell, w, r in zip(row, widths, right, strict=True))
                             .rstrip() for row in grid]
    return "\n".join(lines)


def as_markdown(table: Table) -> str:
    """The table as a GitHub markdown table under a bold title."""
    right = [all(NUMBER.match(row[i]) for row in table.rows) for i in range(len(table.headers))]
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.headers) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def notes(report: dict[str, Any]) -> list[str]:
    """Lines about the machine, the images and anything left out."""
    plat, images = report["platform"], report["images"]
    where = plat["board"] or f"{plat['machine']} {plat['cpu']}"
    lines = [f"machine: {where}, {plat['cores']} cores, load {plat['load_avg_1m']}, "
             f"{plat['versions']['runtime']}, {plat['system']}"]
    chosen = f"split {images['split']!r} of {images['manifest']}, " if "manifest" in images else ""
    folders = len(images["per_folder"]) - ("." in images["per_folder"])
    loose = f", {images['per_folder']['.']} outside them: speed only" if "." in images["per_folder"] else ""
    lines.append(f"images: {images['readable']} readable of {images['selected']} in {images['root']} "
                 f"({chosen}{folders} class folders{loose})")
    if images.get("missing"):
        lines.append(f"split manifest: {images['missing']} listed images not found")
    if images["unreadable"]:
        lines.append(f"unreadable: {len(images['unreadable'])}: "
                     + ", ".join(u["path"] for u in images["unreadable"][:10]))
    for m in report["models"]:
        for run in m["runs"]:
            if (run["other_cpu_share"] or 0) > BUSY:
                lines.append(f"{m['name']} ×{run['threads']}: other processes took {pct(run['other_cpu_share'])} of "
                             "the CPU during the pass, its timings are disturbed: rerun on a quiet machine")
        unknown = (m["accuracy"] or {}).get("unknown_folders")
        if unknown:
            lines.append(f"{m['name']}: folders that are not labels of the model, left out of its accuracy: "
                         + ", ".join(f"{k} ({v})" for k, v in unknown.items()))
    return lines


def terminal(report: dict[str, Any]) -> str:
    """The report for the terminal."""
    return "\n\n".join(["\n".join(notes(report)), *(as_text(t) for t in tables(report))])


def markdown(report: dict[str, Any], plots: list[str]) -> str:
    """report.md: the notes, the tables, the plots."""
    parts = [f"# Benchmark {report['created']}", "\n".join(f"- {line}" for line in notes(report))]
    parts += [as_markdown(t) for t in tables(report)]
    parts += [f"![{Path(p).stem}]({p})" for p in plots]
    if report.get("plots_skipped"):
        parts.append(f"Plots: {report['plots_skipped']}")
    parts.append("Every figure, with versions and each model's sha256, is in report.json; one row per image in "
                 "images-MODEL.csv.")
    return "\n\n".join(parts) + "\n"
