"""Training objectives: each method is one file and one registry entry."""

from lit.methods import at, dkd, fitnets, gan_lit, kd, lit, reviewkd, scratch, slimming, stargan  # noqa: F401  (registers the methods)
from lit.methods.base import METHODS, Method, register_method

__all__ = ["METHODS", "Method", "register_method"]
