"""Only models that can be checked run (issue #42, rows 2, 3, 4 and 14): an unsealed card is refused by
`smartbin check`, `run` and `model install` unless ``[model] allow_unsealed``; the probe tells every two labels
apart; the file is checked before the runtime reads it. Real runtime, real commands."""

import itertools
import json
import shutil
import subprocess
import sys

import pytest

from edge.classifier import Classifier
from edge.config import BUNDLED_MODEL, DEFAULT_CONFIG, load_settings
from edge.errors import ModelCardError, ModelError
from edge.integrity import PROBE_MARGIN, check_probe, labels_digest
from edge.service import model_install
from edge.service.model_install import Refused
from tests.conftest import zero_weights

SEAL_HINT = "python -m convert.seal"


def smartbin(*args):
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=300)


def config_for(tmp_path, model, allow_unsealed=None):
    """The default config with ``model``, mock pins, records in tmp_path (not created until something runs)."""
    extra = "" if allow_unsealed is None else f"\nallow_unsealed = {str(allow_unsealed).lower()}"
    text = DEFAULT_CONFIG.read_text().replace("[model]", f'[model]\npath = "{model}"{extra}', 1).replace(
        "[records]", f'[records]\npath = "{tmp_path / "state" / "items.db"}"', 1).replace(
        "[gpio]", '[gpio]\npin_factory = "mock"', 1)
    path = tmp_path / "smartbin.toml"
    path.write_text(text)
    return path


def rewrite_card(model, change):
    card = json.loads(model.with_suffix(".json").read_text())
    change(card)
    model.with_suffix(".json").write_text(json.dumps(card))


def unseal(card):
    card.pop("integrity")


def swap(first, second, recompute=False):
    """A card change: two labels swapped (and, with ``recompute``, its labels_sha256 made to match)."""

    def change(card):
        labels = card["labels"]
        i, j = labels.index(first), labels.index(second)
        labels[i], labels[j] = labels[j], labels[i]
        if recompute:
            card["integrity"]["labels_sha256"] = labels_digest(labels)

    return change


def one_line(result, *expected):
    """``smartbin``'s failure: exit 1, one line on stderr naming what was expected, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(text in error for text in expected), error
    return error


def test_row_2_an_unsealed_card_with_weights_zeroed_is_refused_by_check_and_run_naming_the_model(tmp_path,
                                                                                                    tiny_model):
    zero_weights(tiny_model)
    rewrite_card(tiny_model, unseal)
    config = config_for(tmp_path, tiny_model)
    error = one_line(smartbin("run", "--config", str(config), "--max-items", "2"), str(tiny_model), SEAL_HINT,
                     "allow_unsealed = true")
    assert "items.db" not in error and "record" not in error
    assert not (tmp_path / "state" / "items.db").exists()  # refused before the records were opened
    checked = smartbin("check", "--config", str(config))
    model_line = next(line for line in checked.stdout.splitlines() if line.startswith("model"))
    assert checked.returncode == 1 and "FAIL" in model_line, checked.stdout
    assert f"{tiny_model}: its card has no integrity section" in model_line and SEAL_HINT in model_line


def zero_bytes(model, start, length=8):
    data = bytearray(model.read_bytes())
    data[start:start + length] = bytes(length)
    model.write_bytes(bytes(data))


def test_row_2_with_allow_unsealed_a_model_the_runtime_loads_but_cannot_run_is_named_at_check_and_run(tmp_path,
                                                                                                       tiny_model):
    """8 bytes of the fixture's flatbuffer tables zeroed at 264: a weight tensor loses its data; the runtime
    loads the file and fails at invoke. It used to pass `smartbin check` and kill `smartbin run` with a
    traceback (and later items logged as 'the item records could not be written')."""
    zero_bytes(tiny_model, 264)
    with pytest.raises(ModelCardError, match="sha256 differs"):  # sealed: refused at the card
        Classifier(tiny_model)
    rewrite_card(tiny_model, unseal)
    config = config_for(tmp_path, tiny_model, allow_unsealed=True)
    error = one_line(smartbin("run", "--config", str(config), "--max-items", "3"),
                     "tiny12.tflite: the runtime failed to run the model: Input tensor 1 lacks data")
    assert "record" not in error and not (tmp_path / "state" / "items.db").exists()
    checked = smartbin("check", "--config", str(config))
    assert checked.returncode == 1 and "model    FAIL tiny12.tflite: the runtime failed to run" in checked.stdout


def test_a_damaged_model_without_its_output_tensor_is_one_line(tiny_model):
    zero_bytes(tiny_model, 1928)  # the fixture's subgraph loses its output list
    rewrite_card(tiny_model, unseal)
    with pytest.raises(ModelError, match="1 inputs and 0 outputs, expected one of each"):
        Classifier(tiny_model, allow_unsealed=True)


def test_row_3_an_unsealed_card_with_two_labels_swapped_sorts_nothing_unless_allowed(tmp_path, tiny_model):
    rewrite_card(tiny_model, unseal)
    rewrite_card(tiny_model, swap("battery", "trash"))
    one_line(smartbin("run", "--config", str(config_for(tmp_path, tiny_model)), "--max-items", "2"),
             "its card has no integrity section", SEAL_HINT)
    assert not (tmp_path / "state" / "items.db").exists()

    allowed = smartbin("run", "--config", str(config_for(tmp_path, tiny_model, True)), "--max-items", "2")
    assert allowed.returncode == 0, allowed.stderr
    warnings = [line for line in (allowed.stdout + allowed.stderr).splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "allow_unsealed" in warnings[0], warnings  # the explicit choice, said once


def test_allow_unsealed_false_is_the_documented_default_and_a_sealed_model_needs_no_setting(tmp_path, tiny_model):
    assert load_settings(config_for(tmp_path, tiny_model)).model.allow_unsealed is False
    assert load_settings(config_for(tmp_path, tiny_model, False)).model.allow_unsealed is False
    checked = smartbin("check", "--config", str(config_for(tmp_path, tiny_model)))
    assert checked.returncode == 0 and "it tells 62 of 66 label pairs apart" in checked.stdout, checked.stdout


def test_row_4_two_labels_swapped_with_the_digest_recomputed_fail_the_probe(tmp_path, tiny_model):
    rewrite_card(tiny_model, swap("battery", "trash", recompute=True))
    with Classifier(tiny_model) as classifier, pytest.raises(ModelError, match="card's labels were swapped"):
        check_probe(classifier)  # the file checks pass: only the probe can tell
    config = config_for(tmp_path, tiny_model)
    one_line(smartbin("run", "--config", str(config), "--max-items", "2"), "tiny12.tflite: probe output differs")
    assert not (tmp_path / "state" / "items.db").exists()  # nothing sorted
    checked = smartbin("check", "--config", str(config))
    assert checked.returncode == 1 and "probe output differs from the card's" in checked.stdout


def test_row_4_on_the_shipped_model_a_pair_the_old_one_image_probe_could_not_tell_apart(tmp_path):
    """paper and shoes had the same output (0.03516) on the one-image probe: a swap passed it."""
    model = tmp_path / BUNDLED_MODEL.name
    for suffix in (".tflite", ".json"):
        shutil.copy(BUNDLED_MODEL.with_suffix(suffix), model.with_suffix(suffix))
    rewrite_card(model, swap("paper", "shoes", recompute=True))
    with Classifier(model, threads=2) as classifier, pytest.raises(ModelError, match="labels were swapped"):
        check_probe(classifier)

    def one_image(card):  # what the card held before: the stripes' output only
        card["integrity"]["probe"] = {"pattern": "smartbin.probe/1", "tolerance": 0.1,
                                      "output": card["integrity"]["probe"]["images"][0]["output"]}

    rewrite_card(model, one_image)
    with Classifier(model, threads=2) as classifier:
        assert check_probe(classifier).startswith("probe output matches")  # the swap went unnoticed


@pytest.mark.parametrize("card_file", [BUNDLED_MODEL.with_suffix(".json"), "tiny"])
def test_every_two_labels_but_the_alike_pairs_differ_by_more_than_the_tolerance_on_one_probe_image(card_file,
                                                                                                    tiny_model):
    card = json.loads((tiny_model.with_suffix(".json") if card_file == "tiny" else card_file).read_text())
    probe = card["integrity"]["probe"]
    assert probe["pattern"] == "smartbin.probe/2"
    apart = probe["tolerance"] + PROBE_MARGIN
    alike = {tuple(pair) for pair in probe["alike"]}
    for a, b in itertools.combinations(card["labels"], 2):
        told = any(abs(image["output"][a] - image["output"][b]) > apart for image in probe["images"])
        assert told != ((a, b) in alike), (a, b)
    assert not alike if card_file != "tiny" else len(alike) == 4  # the shipped model: every pair


def test_a_card_sealed_with_the_one_image_probe_still_passes_with_a_note_to_reseal(tiny_model):
    def one_image(card):
        seed_0 = card["integrity"]["probe"]["images"][0]
        assert seed_0["seed"] == 0
        card["integrity"]["probe"] = {"pattern": "smartbin.probe/1", "tolerance": 0.1, "output": seed_0["output"]}

    rewrite_card(tiny_model, one_image)
    with Classifier(tiny_model) as classifier:
        summary = check_probe(classifier)
    assert summary.startswith("probe output matches the card on 1 image(s)") and SEAL_HINT in summary


def test_row_14_a_truncated_model_gets_the_cards_message_not_the_runtimes(tmp_path, tiny_model):
    data = tiny_model.read_bytes()
    tiny_model.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelCardError) as info:
        Classifier(tiny_model)
    assert str(info.value) == (f"{tiny_model}: {len(data) // 2} bytes, its card says {len(data)}: truncated, "
                               "corrupt or not the card's model")
    checked = smartbin("check", "--config", str(config_for(tmp_path, tiny_model)))
    assert "truncated, corrupt or not the card's model" in checked.stdout and "Flatbuffer" not in checked.stdout


def test_model_install_refuses_an_unsealed_card_unless_allowed(tmp_path, tiny_model):
    rewrite_card(tiny_model, unseal)
    strict = load_settings(config_for(tmp_path, BUNDLED_MODEL))
    with pytest.raises(Refused) as refused:
        model_install.install(strict, tiny_model, None)
    assert str(refused.value).startswith("refused tiny12.tflite: ") and SEAL_HINT in str(refused.value)
    assert not (tmp_path / "state" / "models").exists()
    one_line(smartbin("model", "install", str(tiny_model), "--config", str(config_for(tmp_path, BUNDLED_MODEL))),
             "refused tiny12.tflite", SEAL_HINT)
    allowed = load_settings(config_for(tmp_path, BUNDLED_MODEL, True))
    assert "installed as version" in model_install.install(allowed, tiny_model, None)[-2]


@pytest.mark.parametrize("damage", ["seed", "images", "tolerance", "value"])
def test_a_malformed_probe_in_the_card_is_one_line(tmp_path, tiny_model, damage):
    def change(card):
        probe = card["integrity"]["probe"]
        if damage == "seed":
            probe["images"][1]["seed"] = "x"
        elif damage == "images":
            probe["images"] = {}
        elif damage == "tolerance":
            probe["tolerance"] = "0.1"
        else:
            probe["images"][0]["output"]["trash"] = None

    rewrite_card(tiny_model, change)
    with Classifier(tiny_model) as classifier, pytest.raises(ModelCardError, match="the card's probe"):
        check_probe(classifier)
    one_line(smartbin("run", "--config", str(config_for(tmp_path, tiny_model)), "--max-items", "1"),
             "tiny12.tflite: the card's probe")
