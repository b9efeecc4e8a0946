"""Training objectives: each method is one file here and one entry in `lit.catalog`
(imported on first `METHODS.get`)."""

from lit.methods.base import METHODS, Method, register_method

__all__ = ["METHODS", "Method", "register_method"]
