"""The classifier on a real LiteRT interpreter and a real int8 model, and its start-up checks."""

import json
import shutil

import numpy as np
import pytest

from edge.classifier import Classifier, Prediction
from edge.errors import ModelCardError, ModelError
from edge.model_card import read_card


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
    tiny_model.write_bytes(b"\x00" * 1000)
    with pytest.raises(ModelError) as info:
        Classifier(tiny_model)
    assert "model unreadable" in str(info.value) and "\n" not in str(info.value)


def test_labels_not_matching_outputs(tiny_model):
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    card["labels"] = card["labels"][:11]
    tiny_model.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="12 outputs but its card lists 11 labels"):
        Classifier(tiny_model)


def test_input_size_not_matching_card(tiny_model):
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    card["input"]["height"] = card["input"]["width"] = 224
    tiny_model.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="input shape"):
        Classifier(tiny_model)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("labels"), "'labels' must be"),
    (lambda c: c.update(labels=["a", "a"] + c["labels"][2:]), "duplicates"),
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


def test_input_is_quantized_by_the_models_parameters(tiny_model):
    with Classifier(tiny_model) as classifier:
        pixels = np.arange(32 * 32 * 3, dtype=np.uint32).reshape(32, 32, 3).astype(np.uint8)
        classifier._input = {**classifier._input, "quantization": (2.0, 10)}
        np.testing.assert_array_equal(classifier._quantize_input(pixels),
                                      np.clip(np.round(pixels / 2.0 + 10), 0, 255).astype(np.uint8))
        classifier._input = {**classifier._input, "quantization": (1.0, 0)}
        assert classifier._quantize_input(pixels) is pixels


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
