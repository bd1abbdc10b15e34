"""Loading a TFLite interpreter from whichever runtime is installed: LiteRT first, tflite-runtime second."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

from edge.errors import ModelError, RuntimeMissingError
from edge.native import captured_stderr, release_mapped_file

logger = logging.getLogger(__name__)

# Module paths of the runtimes that provide ``Interpreter``, in order of preference.
RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def interpreter_class(runtimes: tuple[str, ...] = RUNTIMES) -> tuple[type, str]:
    """The first importable ``Interpreter`` class and the name of the runtime that provides it."""
    for module_name in runtimes:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, runtime_version(module_name)
    raise RuntimeMissingError(
        "no TFLite runtime installed: pip install ai-edge-litert (or tflite-runtime with numpy<2)"
    )


def runtime_version(module_name: str) -> str:
    """'package version' of the runtime behind ``module_name``, e.g. 'ai-edge-litert 2.3.0'."""
    from importlib import metadata

    package = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}[module_name.split(".")[0]]
    try:
        return f"{package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return package


def first_line(exc: BaseException) -> str:
    """The first line of what the native runtime said (its messages run over several lines), or the error's type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_interpreter(model_path: str | Path, threads: int | None = None) -> tuple[Any, str, list[str]]:
    """Build and allocate an interpreter for ``model_path`` with ``threads`` CPU threads (default: all cores).

    Returns the interpreter, the runtime's name and version, and what the native runtime wrote to stderr
    meanwhile (LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` on every start):
    kept off the terminal and the journal, logged at debug level (anything but INFO lines as a warning).
    """
    path = Path(model_path)
    cls, runtime = interpreter_class()
    with captured_stderr() as log:
        try:
            interpreter = cls(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"model unreadable: {path}: {first_line(exc)}") from None
    for line in log:
        logger.log(logging.DEBUG if line.startswith("INFO: ") else logging.WARNING, "%s: %s", path.name, line)
    released = release_mapped_file(path)  # XNNPACK packed the weights at allocation: the file's copy is idle
    logger.debug("%s: %.1f MB of the mapped model handed back", path.name, released / 1e6)
    return interpreter, runtime, log
