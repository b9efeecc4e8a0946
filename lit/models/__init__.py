"""Sectioned model families and their registry (a family's module is imported on first use;
the names are in `lit.catalog`)."""

from lit.models.base import Sectioned
from lit.models.registry import MODELS, build_model, register_model

__all__ = ["MODELS", "Sectioned", "build_model", "register_model"]
