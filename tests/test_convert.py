"""The converter: bad input fails in one line with nothing written; a small ResNet-50 (random weights, 64×80 px)
converts end to end into a full-int8 model whose uint8 input is raw pixels, with a card the edge reads, and
whose outputs agree with Keras on real photos from ../shared/data/garbage12 (read in place, never copied).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from convert.__main__ import main
from convert.dataset import Reader, list_folder, stratified_order
from convert.errors import ConversionError
from convert.labels import DEFAULT_LABELS, read_labels, resolve_labels
from convert.validate import Predictions, metrics
from edge.images import labelled_images, read_rgb
from edge.preprocess import prepare
from edge.progress import Progress

HEIGHT, WIDTH = 64, 80  # not square, so that height/width mix-ups fail


def convert(*args: object) -> int:
    return main([str(a) for a in args])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("convert:")]
    assert len(lines) == 1, lines
    return lines[0]


# --- pure parts: no TensorFlow ---------------------------------------------------------------------------


def test_stratified_order_is_deterministic_and_even(tmp_path: Path) -> None:
    items = [(Path(f"{c}/{i}.jpg"), c) for c in "abc" for i in range(10 if c == "a" else 3)]
    first = stratified_order(items, seed=1)
    assert first == stratified_order(list(reversed(items)), seed=1)
    assert first != stratified_order(items, seed=2)
    assert sorted(first) == sorted(items)
    assert sorted(label for _, label in first[:6]) == ["a", "a", "b", "b", "c", "c"]


def test_reader_skips_and_counts_unreadable(tmp_path: Path, garbage12: Path) -> None:
    photo = next((garbage12 / "battery").iterdir())
    (tmp_path / "good.jpg").symlink_to(photo)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    reader = Reader((WIDTH, HEIGHT))
    items = list_folder(tmp_path, "calibration")
    got = list(reader.prepared(items))
    assert [item[0].name for _, item in got] == ["good.jpg"] and got[0][0].shape == (HEIGHT, WIDTH, 3)
    assert [p.name for p in reader.skipped] == ["bad.jpg"]


def test_labels_default_file_and_mismatch(tmp_path: Path) -> None:
    assert resolve_labels(12, None) == DEFAULT_LABELS
    with pytest.raises(ConversionError, match="give --labels"):
        resolve_labels(5, None)
    (tmp_path / "labels.txt").write_text("a\nb\n\nc\n")
    assert resolve_labels(3, tmp_path / "labels.txt") == ("a", "b", "c")
    with pytest.raises(ConversionError, match="3 names but the model has 4"):
        resolve_labels(4, tmp_path / "labels.txt")


def test_metrics() -> None:
    keras = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], dtype=np.float32)
    tflite = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.3, 0.7]], dtype=np.float32)
    figures = metrics(Predictions(keras, tflite, truth=np.array([0, 1, 0, 0])), ("x", "y"))
    assert figures["top1_agreement_pct"] == 75.0 and figures["mean_abs_prob_diff"] == pytest.approx(0.1)
    assert (figures["float_top1_pct"], figures["int8_top1_pct"], figures["drop_pp"]) == (75.0, 50.0, 25.0)
    assert figures["recall_pct"]["int8"] == {"x": pytest.approx(33.33), "y": 100.0}


def test_progress_reports_eta() -> None:
    stream = io.StringIO()
    progress = Progress("calibration", 4, stream=stream, every=0.0)
    progress.advance()
    progress.advance()
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("calibration: 1/4 (25%) [#####") and "ETA" in lines[0]
    assert lines[-1].startswith("calibration: 2/4 done in")


# --- bad input: one line, non-zero exit, nothing written -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small non-ResNet classifier with 5 outputs: enough for the error paths, fast to convert."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="module")
def five_classes(tmp_path_factory: pytest.TempPathFactory, garbage12: Path) -> Path:
    """A labelled folder of garbage12's first five classes, linked in place (nothing copied)."""
    folder = tmp_path_factory.mktemp("five")
    for label in DEFAULT_LABELS[:5]:
        (folder / label).symlink_to(garbage12 / label, target_is_directory=True)
    return folder


@pytest.fixture
def labels5(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(DEFAULT_LABELS[:5]) + "\n")
    return path


def test_missing_and_corrupt_model(tmp_path: Path, garbage12: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "m.tflite"
    out.parent.mkdir()
    assert convert(tmp_path / "none.keras", "--calibration", garbage12, "--out", out) != 0
    assert "model not found" in one_error_line(capsys)
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 truncated")
    assert convert(tmp_path / "bad.keras", "--calibration", garbage12, "--out", out) != 0
    assert "cannot load Keras model" in one_error_line(capsys)
    assert list(out.parent.iterdir()) == []


def test_labels_not_matching_outputs(tiny_model: Path, tmp_path: Path, garbage12: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.tflite"
    assert convert(tiny_model, "--calibration", garbage12, "--out", out) != 0
    assert "5 outputs" in one_error_line(capsys)
    (tmp_path / "four.txt").write_text("a\nb\nc\nd\n")
    assert convert(tiny_model, "--calibration", garbage12, "--out", out, "--labels", tmp_path / "four.txt") != 0
    assert "4 names but the model has 5 outputs" in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "empty", "all-unreadable"])
def test_bad_calibration_folder(case: str, tiny_model: Path, labels5: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "calibration"
    if case != "missing":
        (folder / "battery").mkdir(parents=True)
    if case == "all-unreadable":
        (folder / "battery" / "a.jpg").write_bytes(b"")
        (folder / "battery" / "b.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out" / "m.tflite"
    out.parent.mkdir()
    assert convert(tiny_model, "--calibration", folder, "--out", out, "--labels", labels5) != 0
    expected = {"missing": "folder not found", "empty": "has no images", "all-unreadable": "2 unreadable"}[case]
    assert expected in one_error_line(capsys)
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
def test_unreadable_images_are_skipped_and_counted(tiny_model: Path, labels5: Path, tmp_path: Path,
                                                   garbage12: Path) -> None:
    folder = tmp_path / "calibration"
    for label in DEFAULT_LABELS[:2]:
        (folder / label).mkdir(parents=True)
        for photo in sorted((garbage12 / label).iterdir())[:3]:
            (folder / label / photo.name).symlink_to(photo)  # linked in place, not copied
    (folder / "battery" / "zz-broken.jpg").write_bytes(b"\xff\xd8 broken")
    out = tmp_path / "m.tflite"
    assert convert(tiny_model, "--calibration", folder, "--out", out, "--labels", labels5, "--max-drop", "100") == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert {"images": 6, "skipped_unreadable": 1}.items() <= card["quantization"]["calibration"].items()
    assert card["validation"]["images"] == 6  # no --validation: the readable calibration images


@pytest.mark.slow
def test_drop_beyond_max_drop_fails_and_writes_nothing(tiny_model: Path, labels5: Path, tmp_path: Path,
                                                       five_classes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "m.tflite"
    out.parent.mkdir()
    code = convert(tiny_model, "--calibration", five_classes / "battery", "--count", "8", "--out", out,
                   "--labels", labels5, "--validation", five_classes, "--validation-count", "10", "--max-drop", "-50")
    assert code != 0
    assert "more than --max-drop -50; nothing written" in one_error_line(capsys)
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
def test_unpinned_input_is_the_known_trap_and_is_rejected(tiny_model: Path, tmp_path: Path, garbage12: Path) -> None:
    """Without the 0..255 pin the converter quantizes the input like the caffe-transformed tensor."""
    import keras
    import tensorflow as tf

    from convert import export

    model = keras.models.load_model(tiny_model)

    def unpinned(pixels: tf.Tensor) -> tf.Tensor:
        return model(keras.applications.resnet50.preprocess_input(pixels), training=False)

    export.export_saved_model(model, unpinned, tf.TensorSpec([1, 32, 32, 3], tf.float32), tmp_path / "sm")
    photos = [path for path, _ in labelled_images(garbage12)[::700]]
    pixels = np.stack([prepare(read_rgb(path), (32, 32)) for path in photos])
    with pytest.raises(ConversionError, match=r"input quantization is .* not \(1, 0\)"):
        export.check_int8(export.to_int8(tmp_path / "sm", pixels))


# --- the real thing: a small ResNet-50 of the production architecture, converted end to end ---------------


@pytest.fixture(scope="module")
def resnet_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet-50 (random weights, 64×80) → GAP → Dense(256) → BN → Dropout → Dense(12, softmax), built once."""
    import keras

    keras.utils.set_random_seed(0)
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(HEIGHT, WIDTH, 3))
    for layer in base.layers[:-10]:
        layer.trainable = False
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(len(DEFAULT_LABELS), activation="softmax")(x)
    path = tmp_path_factory.mktemp("resnet") / "resnet.keras"
    keras.Model(base.input, outputs).save(path)
    return path


@pytest.fixture(scope="module")
def converted(resnet_model: Path, tmp_path_factory: pytest.TempPathFactory, garbage12: Path) -> Path:
    out = tmp_path_factory.mktemp("converted") / "resnet.tflite"
    code = convert(resnet_model, "--calibration", garbage12, "--count", "36", "--out", out, "--float",
                   "--validation", garbage12, "--validation-count", "48", "--max-drop", "100", "--threads", "2")
    assert code == 0
    return out


def held_out_photos(garbage12: Path, per_class: int = 4) -> list[Path]:
    """The last photos of each class by name: different from the seeded calibration sample."""
    return [path for label in DEFAULT_LABELS for path in sorted((garbage12 / label).iterdir())[-per_class:]]


@pytest.mark.slow
def test_outputs_written_atomically(converted: Path) -> None:
    names = sorted(p.name for p in converted.parent.iterdir())
    assert names == ["resnet.float.json", "resnet.float.tflite", "resnet.json", "resnet.tflite"]


@pytest.mark.slow
def test_int8_structure_and_raw_pixel_input(converted: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(converted))
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert source["dtype"] == np.uint8 and tuple(source["shape"]) == (1, HEIGHT, WIDTH, 3)
    assert source["quantization"] == (1.0, 0)
    assert sink["dtype"] == np.float32 and tuple(sink["shape"]) == (1, 12)
    dtypes = [np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()]
    assert dtypes.count("float32") == 1 and dtypes.count("int8") > 100  # only the dequantized output is float
    assert converted.stat().st_size * 3.5 < converted.with_name("resnet.float.tflite").stat().st_size


@pytest.mark.slow
def test_card(converted: Path, resnet_model: Path) -> None:
    from edge.model_card import read_card

    card = read_card(converted)
    assert card.labels == DEFAULT_LABELS and card.input.size == (WIDTH, HEIGHT)
    assert (card.input.crop, card.input.resize) == ("item-square", "cv2.INTER_AREA")
    extra = card.extra
    assert {"dtype": "uint8", "scale": 1.0, "zero_point": 0}.items() <= extra["quantization"]["input"].items()
    assert extra["quantization"]["calibration"]["images"] == 36
    assert extra["source"]["sha256"] == hashlib.sha256(resnet_model.read_bytes()).hexdigest()
    assert set(extra["tool"]) == {"smartbin", "tensorflow", "keras"} and extra["created"]
    validation = extra["validation"]
    assert validation["images"] == 48 and set(validation["recall_pct"]) == {"float", "int8"}
    for key in ("float_top1_pct", "int8_top1_pct", "drop_pp", "top1_agreement_pct", "mean_abs_prob_diff"):
        assert isinstance(validation[key], float), key
    assert extra["size_bytes"]["tflite"] == converted.stat().st_size
    assert read_card(converted.with_name("resnet.float.tflite")).labels == DEFAULT_LABELS


@pytest.mark.slow
def test_tflite_agrees_with_keras_on_real_photos(converted: Path, resnet_model: Path, garbage12: Path) -> None:
    """Through the edge's own classifier, raw photos in: int8 tracks Keras; the float model matches it."""
    import keras

    from edge.classifier import Classifier

    photos = held_out_photos(garbage12)
    pixels = np.stack([prepare(read_rgb(path), (WIDTH, HEIGHT)) for path in photos])
    model = keras.models.load_model(resnet_model)
    expected = model.predict(keras.applications.resnet50.preprocess_input(pixels.astype(np.float32)), verbose=0)
    with Classifier(converted, threads=2) as int8, Classifier(converted.with_name("resnet.float.tflite")) as f32:
        assert int8.input_quantization == (1.0, 0)
        got = np.stack([int8.probabilities(image) for image in pixels])
        got_float = np.stack([f32.probabilities(image) for image in pixels])
        assert int8.classify(pixels[0]).top(3)[0][0] in DEFAULT_LABELS
    agreement = np.mean(got.argmax(axis=1) == expected.argmax(axis=1))
    mean_abs = np.mean(np.abs(got - expected))
    print(f"int8 vs Keras on {len(photos)} photos: top-1 agreement {agreement:.1%}, mean |Δp| {mean_abs:.4f}")
    assert agreement >= 0.8 and mean_abs < 0.02  # the unpinned input gave ~55% and ~0.04
    assert np.max(np.abs(got_float - expected)) < 1e-4


def test_a_labels_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_bytes(b"battery\n\xff\xfeglass\n")
    with pytest.raises(ConversionError, match=r"^labels file is not UTF-8 text: .*labels.txt: byte 8$"):
        read_labels(tmp_path / "labels.txt")
