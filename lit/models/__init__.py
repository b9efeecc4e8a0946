"""Sectioned model families and their registry."""

from lit.models import resnet, resnext, stargan, torchvision_resnet, torchvision_vit, vdcnn  # noqa: F401  (registers the families)
from lit.models.base import Sectioned
from lit.models.registry import MODELS, build_model, register_model

__all__ = ["MODELS", "Sectioned", "build_model", "register_model"]
