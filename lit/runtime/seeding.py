"""One seed in the config seeds everything; the same seed on CPU gives the same numbers."""

from __future__ import annotations

import random
import sys

import numpy as np
import torch


def seed_everything(seed: int, compiles: bool = True) -> None:
    """Seed Python, NumPy and torch, and make torch choose deterministic algorithms (warning
    where an operation has none). `compiles=False` (nothing in the process will run
    torch.compile) sets the same flag without torch.use_deterministic_algorithms' import
    of torch._inductor, whose setting only compiled code reads: in torch 2.14 that import
    costs 1.6 s of CPU, a third of a small pipeline job."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)  # what the public call sets
    if compiles or set_flag is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        set_flag(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict:
    """Torch RNG states (CPU and CUDA) as tensors: loadable with `weights_only=True`."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
