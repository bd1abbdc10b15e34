"""The classifier on a real LiteRT interpreter and a real int8 model, and its start-up checks."""

import json

import numpy as np
import pytest

from edge.classifier import Classifier, Prediction
from edge.errors import ModelCardError, ModelError
from edge.integrity import check_probe
from edge.model_card import read_card
from tests.conftest import TINY_MODEL, zero_weights


def test_loads_model_and_card_and_returns_probabilities(tiny_model):
    with Classifier(tiny_model, threads=1) as classifier:
        assert classifier.input_size == (32, 32) and len(classifier.labels) == 12
        assert classifier.runtime.startswith(("ai-edge-litert", "tflite-runtime"))
        probs = classifier.probabilities(np.full((32, 32, 3), 128, np.uint8))
        prediction = classifier.classify(np.full((32, 32, 3), 128, np.uint8))
    assert probs.dtype == np.float32 and probs.shape == (12,)
    assert probs.sum() == pytest.approx(1.0, abs=0.05) and (probs >= 0).all()
    assert prediction.top(3)[0] == (prediction.label, prediction.confidence)


def test_prediction_top_k_is_sorted_with_labels():
    prediction = Prediction(np.array([0.1, 0.6, 0.3], np.float32), ("a", "b", "c"))
    assert prediction.top(2) == [("b", pytest.approx(0.6)), ("c", pytest.approx(0.3))]
    assert prediction.label == "b"


def test_wrong_input_shape_is_refused(tiny_model):
    with Classifier(tiny_model) as classifier, pytest.raises(ValueError, match="expected uint8"):
        classifier.probabilities(np.zeros((224, 224, 3), np.uint8))


def test_missing_model(tmp_path):
    with pytest.raises(ModelError, match="model not found"):
        Classifier(tmp_path / "none.tflite")


def test_missing_card(tiny_model):
    tiny_model.with_suffix(".json").unlink()
    with pytest.raises(ModelCardError, match="model card missing"):
        Classifier(tiny_model)


def test_corrupt_model_is_one_line(tiny_model):
    """An unsealed card (allowed) beside a file the runtime cannot read: the runtime's first line."""
    rewrite_card(tiny_model, lambda c: c.pop("integrity"))
    tiny_model.write_bytes(b"\x00" * 1000)
    with pytest.raises(ModelError) as info:
        Classifier(tiny_model, allow_unsealed=True)
    assert "model unreadable" in str(info.value) and "\n" not in str(info.value)


def test_labels_not_matching_outputs(tiny_model):
    def shorten(card):
        card["labels"] = card["labels"][:11]

    rewrite_card(tiny_model, shorten)  # sealed: its label digest no longer matches
    with pytest.raises(ModelCardError, match="labels are not in the order the model was sealed with"):
        Classifier(tiny_model)
    rewrite_card(tiny_model, lambda c: c.pop("integrity"))  # unsealed: the runtime's outputs tell
    with pytest.raises(ModelCardError, match="12 outputs but its card lists 11 labels"):
        Classifier(tiny_model, allow_unsealed=True)


def test_input_size_not_matching_card(tiny_model):
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    card["input"]["height"] = card["input"]["width"] = 224
    tiny_model.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="input shape"):
        Classifier(tiny_model)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("labels"), "'labels' must be"),
    (lambda c: c.update(labels=["a", "a", *c["labels"][2:]]), "duplicates"),
    (lambda c: c["input"].update(color="BGR"), "input.color"),
    (lambda c: c.update(schema="other/1"), "schema"),
    (lambda c: c["input"].update(crop="letterbox"), "input.crop is 'letterbox', the edge implements"),
    (lambda c: c["input"].update(resize="cv2.INTER_CUBIC"), "input.resize"),
])
def test_bad_card(tiny_model, change, message):
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    change(card)
    tiny_model.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match=message):
        read_card(tiny_model)


def test_unreadable_card(tiny_model):
    tiny_model.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelCardError, match="model card unreadable"):
        read_card(tiny_model)


@pytest.mark.parametrize(("quantization", "pixels", "expected"), [
    ((2.0, 10), [0, 1, 3, 100, 255], [10, 10, 12, 60, 138]),  # q = round(p / 2) + 10, half to even
    ((0.5, 0), [0, 100, 127, 128, 255], [0, 200, 254, 255, 255]),  # q = 2p, clipped to the uint8 range
    ((1.0, 0), [0, 7, 255], [0, 7, 255]),  # raw pixels go in as they are (the shipped model)
])
def test_input_is_quantized_by_the_models_parameters(tiny_model, quantization, pixels, expected):
    with Classifier(tiny_model) as classifier:
        classifier._input = {**classifier._input, "quantization": quantization}
        image = np.array(pixels, np.uint8).reshape(1, -1, 1)
        assert classifier._quantize_input(image).ravel().tolist() == expected


def test_fallback_runtime_order(monkeypatch):
    from edge import runtime

    cls, name = runtime.interpreter_class(("no_such_runtime.interpreter", "ai_edge_litert.interpreter"))
    assert name.startswith("ai-edge-litert") and cls.__name__ == "Interpreter"
    with pytest.raises(ModelError, match="no TFLite runtime installed"):
        runtime.interpreter_class(("no_such_runtime.interpreter",))


def test_a_closed_classifier_says_so(tiny_model):
    classifier = Classifier(tiny_model)
    classifier.close()
    with pytest.raises(ModelError, match="the classifier is closed"):
        classifier.classify(np.zeros((32, 32, 3), np.uint8))


def rewrite_card(model, change):
    card = json.loads(model.with_suffix(".json").read_text())
    change(card)
    model.with_suffix(".json").write_text(json.dumps(card))


def test_weights_zeroed_inside_the_file_are_refused_at_start(tiny_model):
    zero_weights(tiny_model)  # the largest weight tensor's bytes, as stored in the file: it still loads
    with pytest.raises(ModelCardError, match="sha256 differs from its card's: corrupt or not the card's model"):
        Classifier(tiny_model)


def test_a_truncated_model_or_another_models_card_is_refused(tiny_model):
    rewrite_card(tiny_model, lambda c: c["integrity"].update(tflite_bytes=c["integrity"]["tflite_bytes"] + 1))
    with pytest.raises(ModelCardError, match="bytes, its card says"):
        Classifier(tiny_model)


def test_a_card_with_two_labels_swapped_is_refused(tiny_model):
    def swap(card):
        labels = card["labels"]
        labels[0], labels[10] = labels[10], labels[0]  # battery <-> trash

    rewrite_card(tiny_model, swap)
    with pytest.raises(ModelCardError, match="labels are not in the order the model was sealed with"):
        Classifier(tiny_model)


def test_the_probe_output_must_match_the_cards(tiny_model):
    with Classifier(tiny_model) as classifier:
        assert check_probe(classifier).startswith("probe output matches the card")

    def wrong_reference(card):
        output = card["integrity"]["probe"]["images"][0]["output"]
        output["trash"], output["battery"] = output["battery"], output["trash"]

    rewrite_card(tiny_model, wrong_reference)
    with Classifier(tiny_model) as classifier, pytest.raises(ModelError, match="probe output differs from the card"):
        check_probe(classifier)


def test_an_unsealed_card_is_refused_unless_allowed_then_loads_with_a_warning(tiny_model, caplog):
    rewrite_card(tiny_model, lambda c: c.pop("integrity"))
    with pytest.raises(ModelCardError) as info:
        Classifier(tiny_model)
    assert str(info.value) == (f"{tiny_model}: its card has no integrity section, so the file cannot be checked: "
                               f"seal it with `python -m convert.seal {tiny_model}` (a model and card you know to "
                               "be right), or set [model] allow_unsealed = true")
    with Classifier(tiny_model, allow_unsealed=True) as classifier:
        assert check_probe(classifier) == "no reference output in the card: probe skipped"
    assert "its card has no integrity section: the file is not checked ([model] allow_unsealed" in caplog.text


def test_seal_writes_what_the_edge_checks(tiny_model):
    from convert.seal import main as seal_main

    rewrite_card(tiny_model, lambda c: c.pop("integrity"))
    assert seal_main([str(tiny_model)]) == 0
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    assert card["integrity"]["tflite_bytes"] == tiny_model.stat().st_size
    assert card["integrity"]["probe"]["pattern"] == "smartbin.probe/2"
    assert card == json.loads(TINY_MODEL.with_suffix(".json").read_text())  # the fixture is sealed by this tool
    with Classifier(tiny_model) as classifier:
        assert check_probe(classifier).startswith("probe output matches")


def test_check_names_a_corrupt_model_and_runs_the_probe_on_a_good_one(tiny_settings, tiny_model):
    from edge.service.checks import check_model

    assert check_model(tiny_settings).endswith("probe output matches the card on 6 image(s) (largest difference "
                                               "0.000); it tells 62 of 66 label pairs apart (biological/cardboard "
                                               "and 3 more alike)")
    rewrite_card(tiny_model, lambda c: c["integrity"].update(tflite_sha256="0" * 64))
    with pytest.raises(ModelCardError, match="sha256 differs"):
        check_model(tiny_settings)


def test_the_shipped_fake_classifier_scripts_answers_latency_and_failures():
    import time

    from edge.fakes import FakeClassifier

    script = FakeClassifier(["a", "b"], lambda call: [1.0, 0.0] if call % 2 == 0 else [0.2, 0.8], latency_s=0.05)
    pixels = np.zeros((32, 32, 3), np.uint8)
    started = time.monotonic()
    assert [script.classify(pixels).label for _ in range(3)] == ["a", "b", "a"]
    assert time.monotonic() - started >= 0.15 and script.calls == 3
    with pytest.raises(ValueError, match="expected uint8"):
        script.classify(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ModelError, match="gone"):
        FakeClassifier(["a", "b"], error=ModelError("gone")).classify(pixels)
