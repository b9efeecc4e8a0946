"""The run directory's files: resolved config, per-epoch metrics (JSON lines), summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lit.runtime.files import atomic_write_text


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a JSON file atomically (a reader never sees half of it)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_plain) + "\n"
    atomic_write_text(path, text)


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class MetricsLog:
    """Appends one JSON object a line; `truncate_after(...)` drops lines a resumed run redoes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as handle:
            handle.write(json.dumps(clean, default=_plain) + "\n")

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, **limits: int) -> None:
        """Keep the records at or before every limit (`epoch=3, iteration=500`): what a
        checkpoint taken there had already logged. A record without a key passes it."""
        kept = [r for r in self.records() if all(r.get(key, 0) <= limit for key, limit in limits.items())]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write_text(self.path, text)
