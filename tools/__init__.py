"""Operator and developer tools that are not part of the sorter (``python -m tools.NAME``)."""
