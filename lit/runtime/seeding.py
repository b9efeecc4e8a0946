"""One seed in the config seeds everything; the same seed on CPU gives the same numbers."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # ...but without filling every new tensor's memory with NaN first, which that flag also
    # turns on (a guard against code that reads memory it never wrote, which ours does not):
    # 6% of a LIT step's CPU time in fp32 went to those fills
    torch.utils.deterministic.fill_uninitialized_memory = False
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
