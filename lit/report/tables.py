"""Merge per-experiment tables and condense them into DVC metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lit.files import atomic_write_text


def merge_tables(tables: list[Path], output: Path, metrics: Path | None = None) -> pd.DataFrame:
    """Concatenate per-experiment run tables; `metrics` gets the mean test accuracy (or FID)
    of every experiment, method and depth as nested JSON."""
    merged = pd.concat([pd.read_csv(path) for path in tables], ignore_index=True)
    atomic_write_text(output, merged.to_csv(index=False))
    if metrics is not None:
        atomic_write_text(metrics, json.dumps(condense(merged), indent=2, sort_keys=True))
    return merged


def condense(table: pd.DataFrame) -> dict:
    score = "fid" if "fid" in table and table["fid"].notna().any() else "test_acc_selected"
    result: dict = {}
    for (exp, method, depth), group in table.groupby(["experiment", "method", "depth"]):
        key = "teacher" if (group["role"] == "teacher").all() else method
        result.setdefault(exp, {}).setdefault(key, {})[f"depth{depth}"] = {
            score: round(float(group[score].mean()), 6), "seeds": int(len(group)),
        }
    return result
