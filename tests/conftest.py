"""Shared fixtures: real photos from ../shared (skipped where absent), settings for tests, mock pins."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.classifier import Classifier
from edge.config import BUNDLED_MODEL, Settings, load_settings, parse_settings

PROJECT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT.parent / "shared" / "data" / "garbage12"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1200,760")


@pytest.fixture(scope="session")
def garbage12() -> Path:
    """The real photo set (one sub-folder per class); tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config file with the default bins and gates, mock pins, its state (records, models) in tmp_path."""
    text = (BUNDLED_MODEL.parents[1] / "edge" / "smartbin.toml").read_text()
    text = text.replace("[records]\n", f'[records]\npath = "{tmp_path / "state" / "items.db"}"\n', 1)
    text = text.replace("[gpio]\n", '[gpio]\npin_factory = "mock"\n', 1)
    path = tmp_path / "smartbin.toml"
    path.write_text(text)
    return path


def make_settings(tmp_path: Path, **sections: dict) -> Settings:
    """The embedded default config with mock pins, records under tmp_path, and sections overridden."""
    base = load_settings()
    data = base.model_dump()
    data["gpio"] = {"pin_factory": "mock"}
    data["records"] = {"path": tmp_path / "items.db"}
    for name, values in sections.items():
        data[name] = {**data[name], **values} if name not in ("bins", "gates") else values
    return parse_settings(data)


def threshold_rule(settings: Settings, **sorting: object) -> Settings:
    """``settings`` without [costs] and without a hazardous bin: the single-threshold rule of earlier releases
    (with ``sorting`` overrides, e.g. threshold=1.0)."""
    return settings.model_copy(update={
        "costs": None,
        "bins": {name: spec.model_copy(update={"hazardous": False}) for name, spec in settings.bins.items()},
        "sorting": settings.sorting.model_copy(update=sorting),
    })


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


# The 12 garbage labels, in the models' output order.
LABELS = ("battery", "biological", "brown-glass", "cardboard", "clothes", "green-glass", "metal", "paper",
          "plastic", "shoes", "trash", "white-glass")
TINY_MODEL = PROJECT / "tests" / "fixtures" / "tiny12.tflite"


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A copy of the tiny real int8 model (32×32 uint8 input, the 12 garbage labels) with its card."""
    for suffix in (".tflite", ".json"):
        shutil.copy(TINY_MODEL.with_suffix(suffix), tmp_path / f"tiny12{suffix}")
    return tmp_path / "tiny12.tflite"


@pytest.fixture
def tiny_settings(tmp_path: Path, tiny_model: Path) -> Settings:
    """Default bins and gates, the tiny model, unpaced frames, one frame per item (``frames`` trigger), mock pins,
    records in tmp_path."""
    return make_settings(tmp_path, model={"path": tiny_model}, camera={"fps": 0.0, "width": 320, "height": 240},
                         sorting={"votes": 1}, conveyor={"trigger": "frames"})


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by its own chromedriver."""
    if not (CHROMIUM and CHROMEDRIVER):
        reason = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def zero_weights(model):
    """Zero the largest weight tensor's bytes, as stored in the file (the model still loads)."""
    card = json.loads(model.with_suffix(".json").read_text())
    side = card["input"]["height"]
    with Classifier(model, allow_unsealed=True) as classifier:
        classifier.classify(np.zeros((side, card["input"]["width"], 3), np.uint8))
        interpreter = classifier.interpreter
        weights = max((interpreter.get_tensor(t["index"]).tobytes() for t in interpreter.get_tensor_details()
                       if len(t["shape"]) >= 2 and t["shape"][0] != 1), key=len)
    data = model.read_bytes()
    start = data.find(weights)
    assert start > 0 and len(weights) >= 64
    model.write_bytes(data[:start] + bytes(len(weights)) + data[start + len(weights):])
