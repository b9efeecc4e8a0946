"""Published results beside ours: read `config/reference/published.yaml` and match it to configurations.

A published value matches a configuration of an experiment only where the data set is the
same (with no data-set options: a subset matches nothing), the model is the same (family,
depth, method) and, for a distilled model, the teacher is the same (family and depth of
the experiment's reference teacher). Each value carries its protocol (which epoch, how
many runs) and its source, so a table never shows a number without saying what it is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lit.config import read_yaml_mapping

ENTRY_KEYS = {"data", "family", "depth", "method", "teacher", "protocol", "source"}
METRICS = ("accuracy", "fid")  # accuracy in percent; FID as published


@dataclass(frozen=True)
class Published:
    data: str
    family: str
    depth: int
    method: str
    teacher: tuple[str, int] | None  # (family, depth); None: trained without a teacher
    metric: str  # "accuracy" (a fraction, as our tables) or "fid"
    value: float
    protocol: str  # what the number is, in words
    source: str  # where it is published, in words
    source_key: str  # the short name of the source in the file

    @property
    def text(self) -> str:
        shown = f"{self.value * 100:.2f}" if self.metric == "accuracy" else f"{self.value:.2f}"
        return f"{shown} ({self.source_key}: {self.protocol})"


def read_published(path: str | Path) -> list[Published]:
    """Every entry of a published-results file; a malformed entry raises ValueError naming it."""
    path = Path(path)
    content = read_yaml_mapping(path)  # a ConfigError (a ValueError) says what is wrong with the file
    if not isinstance(content.get("results"), list):
        raise ValueError(f"published-results file {path}: expected a mapping with a list under 'results'")
    sources, protocols = content.get("sources") or {}, content.get("protocols") or {}
    return [parse_entry(entry, index, sources, protocols, path) for index, entry in enumerate(content["results"])]


def parse_entry(entry: Any, index: int, sources: dict, protocols: dict, path: Path) -> Published:
    where = f"published-results file {path}, results[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping, got {entry!r}")
    metrics = [name for name in METRICS if name in entry]
    missing = sorted(ENTRY_KEYS - set(entry))
    unknown = sorted(set(entry) - ENTRY_KEYS - set(METRICS))
    if missing or unknown or len(metrics) != 1:
        problem = (f"missing {', '.join(missing)}" if missing else f"unknown key {', '.join(unknown)}" if unknown
                   else f"expected exactly one of {', '.join(METRICS)}")
        raise ValueError(f"{where}: {problem}")
    for key, table in (("source", sources), ("protocol", protocols)):
        if entry[key] not in table:
            raise ValueError(f"{where}: {key} {entry[key]!r} is not listed under '{key}s'")
    metric = metrics[0]
    value = entry[metric]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: {metric} must be a number, got {value!r}")
    return Published(
        data=str(entry["data"]), family=str(entry["family"]), depth=int(entry["depth"]), method=str(entry["method"]),
        teacher=parse_model(entry["teacher"], where), metric=metric,
        value=value / 100.0 if metric == "accuracy" else float(value),
        protocol=str(protocols[entry["protocol"]]), source=str(sources[entry["source"]]), source_key=str(entry["source"]),
    )


def parse_model(text: Any, where: str) -> tuple[str, int] | None:
    """"resnet110" -> ("resnet", 110); None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"([a-z_]+?)(\d+)", str(text))
    if not match:
        raise ValueError(f"{where}: teacher must be <family><depth> (resnet110) or null, got {text!r}")
    return match.group(1), int(match.group(2))


def matching(published: list[Published], config: pd.Series, data: str, data_options: Any,
             teacher: pd.Series | None) -> list[Published]:
    """The published values of one configuration (a row of the experiment's configurations)."""
    if not published or (isinstance(data_options, str) and data_options) or not isinstance(data, str):
        return []
    teacher_model = None if teacher is None else (teacher["family"], int(teacher["depth"]))
    found = []
    for entry in published:
        if (entry.data, entry.family, entry.method) != (data, config["family"], config["method"]):
            continue
        if math.isnan(config["depth"]) or entry.depth != int(config["depth"]):
            continue
        if entry.teacher is not None and entry.teacher != teacher_model:
            continue
        found.append(entry)
    return found
