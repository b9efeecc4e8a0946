"""Seeding: the same numbers from the same seed, deterministic algorithms chosen, and no
NaN fill of every new tensor (the cost use_deterministic_algorithms adds by default)."""

from __future__ import annotations

import torch

from lit.runtime.seeding import seed_everything


def test_seeding_chooses_deterministic_algorithms_without_filling_new_memory():
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.utils.deterministic.fill_uninitialized_memory)
    try:
        seed_everything(3)
        first = torch.randn(5)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
        seed_everything(3)
        assert torch.equal(first, torch.randn(5))
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = previous[2]
