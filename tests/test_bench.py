"""``smartbin bench`` on the tiny real int8 model and real photos: the report's structure, its figures against a
direct computation with Classifier + prepare, the accuracy maths by hand, and bad input as one-line errors."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from edge.bench import plots
from edge.bench.accuracy import evaluate
from edge.bench.dataset import collect
from edge.bench.loop import measure
from edge.classifier import Classifier, Prediction
from edge.cli import main
from edge.config import DEFAULT_CONFIG, load_settings
from edge.decision import cost_table, decider_for
from edge.images import read_rgb
from edge.preprocess import prepare
from tests.conftest import LABELS, SHARED_DATA, TINY_MODEL, make_settings

PER_CLASS = 3


def bench(*args: str) -> tuple[int, str, str]:
    """Run ``smartbin bench ARGS`` in-process; returns the exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["bench", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PER_CLASS real photos per class, two in a folder that is not a label, one file that is not an image."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("photos")
    for folder in sorted(p for p in SHARED_DATA.iterdir() if p.is_dir()):
        (root / folder.name).mkdir()
        for photo in sorted(folder.glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, root / folder.name / photo.name)
    (root / "compost").mkdir()
    for photo in sorted((SHARED_DATA / "biological").glob("*.jpg"))[PER_CLASS:PER_CLASS + 2]:
        shutil.copy(photo, root / "compost" / photo.name)
    (root / "paper" / "torn.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture(scope="module")
def direct(photos: Path) -> tuple[list[int], np.ndarray, float]:
    """Truth indices and probabilities of the labelled photos from Classifier + prepare, and a threshold
    between their lowest and highest confidence (the tiny untrained model's are all low)."""
    with Classifier(TINY_MODEL, threads=1) as classifier:
        labels = classifier.labels
        pairs = [(p, p.parent.name) for p in sorted(photos.glob("*/*.jpg"))
                 if p.parent.name in labels and p.name != "torn.jpg"]
        probs = np.array([classifier.probabilities(prepare(read_rgb(p), classifier.input_size)) for p, _ in pairs])
    confidence = probs.max(axis=1)
    assert confidence.min() < confidence.max()
    return [labels.index(label) for _, label in pairs], probs, float(confidence.min() + confidence.max()) / 2


@pytest.fixture(scope="module")
def run(photos: Path, direct, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One benchmark of the tiny model at 1 and 2 threads; returns the report folder, stdout and stderr."""
    out = tmp_path_factory.mktemp("report")
    code, stdout, stderr = bench("--model", str(TINY_MODEL), "--images", str(photos), "--threads", "1,2",
                                 "--threshold", str(direct[2]), "--warmup", "2", "--out", str(out))
    assert code == 0, stderr
    return out, stdout, stderr


@pytest.fixture(scope="module")
def report(run: tuple[Path, str, str]) -> dict:
    return json.loads((run[0] / "report.json").read_text())


def test_report_structure(run, report, direct):
    out, stdout, _ = run
    assert report["schema"] == "smartbin.bench-report/1"
    assert report["platform"]["cores"] >= 1 and report["platform"]["versions"]["runtime"].startswith("ai-edge")
    assert report["settings"]["threads"] == [1, 2] and report["settings"]["threshold"] == direct[2]
    images = report["images"]
    assert images["selected"] == 12 * PER_CLASS + 3 and images["readable"] == 12 * PER_CLASS + 2
    assert [u["path"] for u in images["unreadable"]] == ["paper/torn.jpg"]
    (model,) = report["models"]
    assert model["sha256"] == hashlib.sha256(TINY_MODEL.read_bytes()).hexdigest()
    assert model["card"]["input"] == {"width": 32, "height": 32} and len(model["card"]["labels"]) == 12
    assert model["xnnpack"]["in_use"] and model["xnnpack"]["partitions"] >= 1
    assert model["memory"]["activation_peak_bytes"] > 0 and model["memory"]["weight_bytes"] > 0
    assert model["cold_start"]["load_s"] > 0 and model["cold_start"]["first_invoke_ms"] > 0
    assert [r["threads"] for r in model["runs"]] == [1, 2]
    for run_ in model["runs"]:
        assert run_["images"] == 12 * PER_CLASS + 2 and run_["peak_rss_mib"] > 0 and run_["throughput_per_s"] > 0
        for stage in ("decode", "preprocess", "invoke", "postprocess", "total"):
            figures = run_["latency_ms"][stage]
            assert figures["n"] == run_["images"]
            assert 0 < figures["min"] <= figures["p50"] <= figures["p90"] <= figures["p99"] <= figures["max"]
        assert run_["top1_same_as_first_run"] == 1.0
        assert 0 <= run_["other_cpu_share"] <= 1
        assert run_["items_per_s"] == pytest.approx(run_["throughput_per_s"] / load_settings().sorting.votes)
    accuracy = model["accuracy"]
    assert accuracy["images"] == 12 * PER_CLASS and accuracy["unknown_folders"] == {"compost": 2}
    assert len(accuracy["curve"]["threshold"]) == 101
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.json", "report.md", "images-tiny12.csv", "latency.png", "confusion-tiny12.png", "threshold.png",
         "reject-cost.png"])
    for title in ("Models", "Speed", "Accuracy", "Per class", "Most frequent mistakes", "Decisions", "Bins of tiny12"):
        assert title in stdout and f"**{title}" in (out / "report.md").read_text()
    assert "compost (2)" in stdout and "paper/torn.jpg" in stdout


def test_progress_bar_reports_on_stderr(run):
    assert f"{2 * (12 * PER_CLASS + 3)} done in" in run[2]


def test_figures_match_a_direct_computation(report, direct):
    truth, probs, threshold = direct
    predicted = probs.argmax(axis=1).tolist()
    accuracy = report["models"][0]["accuracy"]

    confusion = [[0] * 12 for _ in range(12)]
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    assert accuracy["confusion"]["matrix"] == confusion
    assert accuracy["top1"] == pytest.approx(np.mean([t == p for t, p in zip(truth, predicted, strict=True)]))
    top3 = [t in np.argsort(-row, kind="stable")[:3] for row, t in zip(probs, truth, strict=True)]
    assert accuracy["top3"] == pytest.approx(np.mean(top3))
    f1 = []
    for c in range(12):
        tp = sum(t == c and p == c for t, p in zip(truth, predicted, strict=True))
        precision = tp / max(predicted.count(c), 1)
        recall = tp / max(truth.count(c), 1)
        f1.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    assert accuracy["f1_weighted"] == pytest.approx(sum(f * truth.count(c) for c, f in enumerate(f1)) / len(truth))
    accepted = probs.max(axis=1) >= threshold
    assert accuracy["threshold"]["rejected_share"] == pytest.approx(1 - accepted.mean())
    correct = probs.argmax(axis=1) == np.array(truth)
    assert accuracy["threshold"]["accepted_accuracy"] == pytest.approx(correct[accepted].mean())


def test_bins_match_the_loops_decisions_item_by_item(report, direct):
    """Per-bin purity, recall, leak, rejects and cost in report.json against Decider.decide, one item at a time,
    as the sorting loop decides, counted here by hand; the threshold rule's figures beside them."""
    truth, probs, _ = direct
    settings = load_settings()
    model = report["models"][0]
    assert set(model) >= {"bins", "hazardous_leak", "reject_rate", "cost_per_1000", "threshold_rule",
                          "reject_cost_curve"}
    bin_of, labels = settings.bin_of(), LABELS
    for result, rule in ((model, decider_for(settings, labels)),
                         (model["threshold_rule"], decider_for(settings, labels, costs=False))):
        decisions = [rule.decide([Prediction(p, labels)]) for p in probs]
        landed = [d.bin for d in decisions]
        belongs = [bin_of[labels[t]] for t in truth]
        for name in settings.bins:
            here = [belongs[i] for i, x in enumerate(landed) if x == name]  # what belongs where it landed
            items = len(here)
            assert result["bins"][name]["items"] == items
            assert result["bins"][name]["purity"] == (pytest.approx(here.count(name) / items) if items else None)
            own = [landed[i] for i, b in enumerate(belongs) if b == name]
            assert result["bins"][name]["recall"] == (pytest.approx(own.count(name) / len(own)) if own else None)
        batteries = [landed[i] for i, t in enumerate(truth) if labels[t] == "battery"]
        assert result["hazardous_items"] == len(batteries) == PER_CLASS
        assert result["hazardous_leaked"] == sum(b != "hazardous" for b in batteries)
        assert result["reject_rate"] == pytest.approx(np.mean([d.rejected for d in decisions]))
    table = cost_table(settings, labels)
    columns = [*settings.bins, "reject"]
    realised = [table[t, columns.index("reject" if d.rejected else d.bin)]
                for t, d in zip(truth, (decider_for(settings, labels).decide([Prediction(p, labels)]) for p in probs),
                                strict=True)]
    assert model["cost_per_1000"] == pytest.approx(1000 * np.mean(realised))
    curve = model["reject_cost_curve"]
    assert len(curve["reject_cost"]) == len(curve["reject_rate"]) == len(curve["purity"])
    assert curve["reject_rate"] == sorted(curve["reject_rate"], reverse=True)  # dearer rejects, fewer of them


def test_csv_rows_agree_with_the_report(run, report):
    rows = list(csv.DictReader((run[0] / "images-tiny12.csv").open()))
    assert len(rows) == report["images"]["readable"]
    for threads, run_ in zip((1, 2), report["models"][0]["runs"], strict=True):
        invoke = np.array([float(r[f"invoke_ms_t{threads}"]) for r in rows])
        total = np.array([float(r[f"total_ms_t{threads}"]) for r in rows])
        assert np.median(invoke) == pytest.approx(run_["latency_ms"]["invoke"]["p50"], abs=1e-3)
        assert run_["throughput_per_s"] == pytest.approx(len(rows) / (total.sum() / 1000), rel=1e-3)
    known = [r for r in rows if r["truth"] in report["models"][0]["card"]["labels"]]
    top1 = np.mean([r["top1"] == r["truth"] for r in known])
    assert report["models"][0]["accuracy"]["top1"] == pytest.approx(top1)


def test_accuracy_by_hand():
    # 3 classes; truths a a a b b c; predictions a a b b c c (confidences 0.9 0.5 0.8 0.7 0.4 0.6)
    labels = ["a", "b", "c"]
    predicted, confidence = [0, 0, 1, 1, 2, 2], [0.9, 0.5, 0.8, 0.7, 0.4, 0.6]
    probs = np.array([[(1 - p) / 2] * 3 for p in confidence])
    probs[np.arange(6), predicted] = confidence
    figures = evaluate(["a", "a", "a", "b", "b", "c", "x", None], np.vstack([probs, np.full((2, 3), 1 / 3)]),
                       labels, threshold=0.6)
    assert figures["images"] == 6 and figures["unknown_folders"] == {"x": 1}
    assert figures["confusion"]["matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert figures["top1"] == pytest.approx(4 / 6)
    # F1: a = 2·2/(4+0+1) = 0.8, b = 2/(2+1+1) = 0.5, c = 2/(2+1+0) = 2/3; weights 3, 2, 1
    assert figures["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 2 / 3) / 6)
    assert figures["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert figures["per_class"]["b"] == {"support": 2, "predicted": 2, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    # at 0.6: rejected 0.5 (a) and 0.4 (c, wrong); accepted 0.9 a✓ 0.8 b✗ 0.7 b✓ 0.6 c✓
    assert figures["threshold"]["rejected_share"] == pytest.approx(2 / 6)
    assert figures["threshold"]["accepted_accuracy"] == pytest.approx(3 / 4)
    assert figures["threshold"]["accepted_wrong_share"] == pytest.approx(1 / 6)
    assert figures["top_confusions"][0] == {"truth": "a", "predicted": "b", "count": 1, "share_of_truth": 1 / 3}
    assert evaluate([None, None], np.full((2, 3), 1 / 3), labels, 0.5) is None


def test_split_manifest_and_max_images(photos, tmp_path):
    manifest = tmp_path / "split.csv"
    first = sorted(p.name for p in (photos / "battery").iterdir())[0]
    rows = ["path,label,split", f"battery/{first},battery,test", "paper/gone.jpg,paper,test", "shoes/x.jpg,shoes,train"]
    manifest.write_text("\n".join(rows) + "\n")
    chosen = collect(photos, manifest, "test")
    assert [i.truth for i in chosen.images] == ["battery"]
    assert chosen.selection["listed"] == 2 and chosen.selection["missing"] == 1
    capped = collect(photos, max_images=13)
    assert len(capped.images) == 13 and len({i.truth for i in capped.images}) == 13  # one per folder first


def test_plots_are_optional(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert "matplotlib is not installed" in plots.missing()


def one_line_error(code: int, stdout: str, stderr: str, expected: str) -> None:
    assert code != 0 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("smartbin: ") and expected in stderr, stderr


def test_bad_input_is_a_one_line_error(tmp_path, tiny_model, photos):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    (empty / "battery").mkdir(parents=True)
    one_line_error(*bench("--model", str(tiny_model), "--images", str(empty), "--out", str(out)), "no images")
    one_line_error(*bench("--model", str(tiny_model), "--images", str(tmp_path / "nowhere"), "--out", str(out)),
                   "images folder not found")
    one_line_error(*bench("--model", str(tmp_path / "none.tflite"), "--images", str(photos), "--out", str(out)),
                   "model not found")
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    tiny_model.with_suffix(".json").write_text(json.dumps({**card, "labels": card["labels"][:11]}))
    one_line_error(*bench("--model", str(tiny_model), "--images", str(photos), "--out", str(out)),
                   "labels are not in the order the model was sealed with")
    one_line_error(*bench("--model", str(TINY_MODEL), "--images", str(photos), "--out", str(out),
                          "--split-manifest", str(tmp_path / "none.csv")), "split manifest not found")
    assert not out.exists()  # nothing written on failure


def tune(*args: str) -> tuple[int, str, str]:
    """Run ``smartbin tune ARGS`` in-process; returns the exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["tune", *args])
    return code, out.getvalue(), err.getvalue()


def test_tune_prints_config_lines_that_meet_the_target_or_says_it_cannot(tmp_path, tiny_model, photos):
    import tomllib

    config = tmp_path / "smartbin.toml"
    config.write_text(DEFAULT_CONFIG.read_text().replace(
        "[model]\n", f'[model]\npath = "{tiny_model}"\n', 1))
    code, stdout, _ = tune("--config", str(config), "--images", str(photos), "--max-leak", "1", "--max-reject", "1")
    assert code == 0 and "meets the target" in stdout
    pasted = tomllib.loads(stdout.split("(each key in its section):")[1])
    assert set(pasted) == {"sorting", "costs"} and set(pasted["costs"]) == {"reject"}
    # the lines work: pasted into the config, the config loads, and bench agrees with what tune printed
    text = config.read_text().replace("\n[costs]\n", f"\n[costs]\nreject = {pasted['costs']['reject']}\n", 1)
    settings = load_settings(write_text(tmp_path / "tuned.toml", text.replace(
        "\n[sorting]\n", f"\n[sorting]\nquarantine_p = {pasted['sorting']['quarantine_p']}\n", 1)))
    assert settings.costs.reject == pasted["costs"]["reject"]
    # the untrained tiny model cannot sort 38 photos with no rejects, no leak and pure bins
    code, stdout, _ = tune("--config", str(config), "--images", str(photos), "--max-leak", "0", "--max-reject", "0",
                           "--min-purity", "100%")
    assert code == 1 and "the target cannot be met on these photos; closest:" in stdout
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main(["tune", "--config", str(config), "--images", str(photos), "--max-leak", "2"])
    assert exited.value.code == 2 and "--max-leak: must lie in [0, 1]: '2'" in err.getvalue()


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_loop_benchmark_times_items_of_votes_frames_read_as_fast_as_the_loop_takes_them(tmp_path, garbage12):
    photos = tmp_path / "photos"
    for label in ("battery", "paper"):
        (photos / label).mkdir(parents=True)
        for path in sorted((garbage12 / label).iterdir())[:2]:
            (photos / label / path.name).symlink_to(path)
    settings = make_settings(tmp_path, model={"path": TINY_MODEL}, sorting={"votes": 3})
    figures = measure(settings, photos, items=6)
    assert figures["frames_per_item"] == 3  # counted from the records: a folder is not one paced item per photo
    assert figures["loop_items_per_s"] > 1 / (settings.simulator.spacing_m / settings.conveyor.belt_speed_m_s)
    assert {"preprocess_ms_p50", "classify_ms_p50", "invoke_per_s", "ratio"} <= set(figures)
