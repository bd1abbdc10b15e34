"""The class labels in output-index order: from a labels file, or garbage12's twelve by default."""

from __future__ import annotations

from pathlib import Path

from convert.errors import ConversionError

# The original model's classes, in index order (the sorted folder names of garbage12).
DEFAULT_LABELS = (
    "battery", "biological", "brown-glass", "cardboard", "clothes", "green-glass",
    "metal", "paper", "plastic", "shoes", "trash", "white-glass",
)  # fmt: skip


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Labels from a text file, one per line; blank lines and surrounding spaces are ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConversionError(f"labels file unreadable: {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConversionError(f"labels file is not UTF-8 text: {path}: byte {exc.start}") from None
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise ConversionError(f"labels file is empty: {path}")
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise ConversionError(f"labels file {path} lists {', '.join(duplicates)} more than once")
    return labels


def resolve_labels(classes: int, labels_file: str | Path | None) -> tuple[str, ...]:
    """The labels for a model with ``classes`` outputs: the file's, or the default twelve for 12 outputs."""
    if labels_file is None:
        if classes != len(DEFAULT_LABELS):
            raise ConversionError(
                f"the model has {classes} outputs, not the default 12 classes: give --labels FILE "
                f"with {classes} names, one per line, in output-index order"
            )
        return DEFAULT_LABELS
    labels = read_labels(labels_file)
    if len(labels) != classes:
        raise ConversionError(
            f"labels file {labels_file} lists {len(labels)} names but the model has {classes} outputs"
        )
    return labels
