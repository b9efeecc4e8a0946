"""Errors the command line reports in one line, importable without torch (a `lit` process
that only reads files, such as `lit aggregate` or `lit report`, never loads it)."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, foreign or of another kind."""
