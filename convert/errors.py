"""The converter's one error: bad input or a model that fails its checks, reported as one line."""

from __future__ import annotations

from edge.errors import SmartbinError


class ConversionError(SmartbinError):
    """The conversion cannot go on: the message says why in one line; nothing has been written."""
