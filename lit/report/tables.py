"""Condense a run table into DVC metrics: mean score by experiment, method and depth."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lit.runtime.files import atomic_write_text


def condense(table: pd.DataFrame) -> dict:
    """{experiment: {method or "teacher": {"depthN": {score: mean, "seeds": n}}}}; the score is
    FID for generator experiments and the selected checkpoint's test accuracy otherwise."""
    result: dict = {}
    for exp, runs in table.groupby("experiment"):
        score = "fid" if "fid" in runs and runs["fid"].notna().any() else "test_acc_selected"
        for (method, depth), group in runs.groupby(["method", "depth"]):
            key = "teacher" if (group["role"] == "teacher").all() else method
            result.setdefault(exp, {}).setdefault(key, {})[f"depth{depth}"] = {
                score: round(float(group[score].mean()), 6), "seeds": int(len(group)),
            }
    return result


def write_metrics(table: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, json.dumps(condense(table), indent=2, sort_keys=True) + "\n")
