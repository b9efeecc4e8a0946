"""A classifier run's `eval.json` from the scores `lit train` made of its own checkpoints.

The training process has torch, the data and the model loaded when its run ends, so
`lit train` scores the run there (`lit.evaluate.run.score_finished_run`: the very
function `lit evaluate` runs) and keeps the result in `summary.json` under `scores`,
with the SHA-256 of the two checkpoints it scored and `SCORES_REVISION`. `lit evaluate`
then writes `eval.json` from those scores when they are of the checkpoints now in the run
directory and of this revision, without importing torch: a pipeline's evaluation job
takes a fraction of a second instead of a Python-and-torch start-up and a second model
load (about 6 s of a digits run's 20). Anything else (an imported teacher, a run trained
before this, a checkpoint replaced since, `lit evaluate --rescore`) is evaluated afresh;
a run directory copied elsewhere keeps its bytes and so its scores.

No torch here: this is the path that avoids it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from lit.config import RunConfig, from_dict
from lit.runtime.runlog import read_json, write_json

# Bump when what a classifier's evaluation computes changes (a new field, another
# counting): scores kept by an older `lit train` are then evaluated afresh.
SCORES_REVISION = 1
SCORED_CHECKPOINTS = ("best", "last")


def run_config(run_dir: Path) -> RunConfig:
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    return from_dict(yaml.safe_load(config_path.read_text()))


def checkpoint_digests(run_dir: Path) -> dict[str, str | None]:
    """SHA-256 of the checkpoints a classifier's evaluation reads (None where one is absent)."""
    digests: dict[str, str | None] = {}
    for which in SCORED_CHECKPOINTS:
        path = run_dir / "checkpoints" / f"{which}.pt"
        if not path.is_file():
            digests[which] = None
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests[which] = digest.hexdigest()
    return digests


def training_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's `summary.json`, its `scores` included (None without one); `eval.json`
    carries it without them."""
    path = run_dir / "summary.json"
    return read_json(path) if path.exists() else None


def protocol_fields(cfg: RunConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """How the reported numbers were obtained: the selection rule, the share of the training
    set held out, and the oracle (best test epoch, the paper's protocol) where it was logged."""
    fields: dict[str, Any] = {"selection": cfg.train.selection, "val_fraction": cfg.data.val_fraction}
    if cfg.evaluate.test_every_epoch and "oracle_test_acc" in summary:
        fields.update(test_acc_oracle=summary["oracle_test_acc"], oracle_epoch=summary.get("oracle_epoch"))
    return fields


def classifier_record(cfg: RunConfig, summary: dict[str, Any] | None, scored: dict[str, Any],
                      provenance: dict[str, Any]) -> dict[str, Any]:
    """`eval.json` of a classifier run: its config, its training summary (without the scores,
    `training_summary`), the scores of its checkpoints (`scored`), how they were obtained
    and where they were computed."""
    record: dict[str, Any] = {"config": cfg.to_dict()}
    if summary is not None:
        record["train"] = summary
    record.update(scored)
    record.update(protocol_fields(cfg, summary or {}))
    record["provenance"] = provenance
    return record


def reuse_training_scores(run_dir: str | Path) -> dict[str, Any] | None:
    """Write `eval.json` from the scores `lit train` kept in `summary.json` and return it;
    None (nothing written) when there are none, they are of another revision, or the
    checkpoints in the run directory are not the ones scored."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    summary = training_summary(run_dir)  # read once: the scores come out of it
    scores = summary.pop("scores", None) if summary is not None else None
    if not isinstance(scores, dict) or scores.get("revision") != SCORES_REVISION:
        return None
    if scores.get("checkpoints") != checkpoint_digests(run_dir):
        return None
    # the provenance is the training process's: its command line says `lit train`
    record = classifier_record(cfg, summary, scores["result"], scores["provenance"])
    write_json(run_dir / "eval.json", record)
    return record
