"""Evaluate a run directory into its `eval.json`: classifiers by accuracy, generators by FID."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lit.config import RunConfig
from lit.data import Batches, DataSplits, load_data
from lit.models.io import load_model
from lit.runtime.device import resolve_device
from lit.runtime.provenance import now, provenance
from lit.runtime.runlog import read_json, write_json
from lit.evaluate.accuracy import accuracy
from lit.evaluate.cost import count_flops, count_parameters
from lit.evaluate.generator import evaluate_generator
from lit.evaluate.scores import (SCORES_REVISION, checkpoint_digests, classifier_record, run_config,
                                 training_summary)


def example_input(data: DataSplits, batch: int) -> torch.Tensor:
    """A batch of the data set's input shape: normalised noise for images, ids for text."""
    if data.kind == "image":
        return torch.randn(batch, *data.input_shape)
    return torch.randint(0, 2, (batch, *data.input_shape))


def evaluate_run(run_dir: str | Path, devices: list[str] | None = None, latency_runs: int = 30,
                 throughput_batch: int = 256, fid_images: int | None = None) -> dict[str, Any]:
    """Score a finished run afresh into its `eval.json` (and, for a generator, `samples.png`).
    A classifier gets accuracy, parameters and FLOPs (its speed comes from the speed
    stage); a generator gets FID and its latency on `devices[0]` (`latency_runs`).
    (`lit evaluate` first tries the scores `lit train` kept: `lit.evaluate.scores`.)"""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    summary = training_summary(run_dir)
    if summary is not None:
        summary.pop("scores", None)  # eval.json carries the summary, not the scores twice
    started = now()
    selected = load_model(run_dir, "best")  # on the CPU: its task decides how the run is scored
    if getattr(selected[0], "task", "classify") == "translate":
        result: dict[str, Any] = {"config": cfg.to_dict(), **({"train": summary} if summary is not None else {})}
        device = devices[0] if devices else None
        result.update(evaluate_generator(run_dir, cfg, device, fid_images, latency_runs=latency_runs))
        # FID is scored in fp32 on this device
        result["provenance"] = provenance(resolve_device(device or cfg.train.device), precision="float32",
                                          started=started, finished=now())
    else:
        scored = evaluate_classifier(run_dir, cfg, selected)
        # accuracy is scored in fp32 on the CPU
        result = classifier_record(cfg, summary, scored, provenance(torch.device("cpu"), precision="float32",
                                                                    started=started, finished=now()))
    write_json(run_dir / "eval.json", result)
    return result


def score_finished_run(run_dir: str | Path) -> dict[str, Any] | None:
    """What `lit train` does as a classifier run ends: score its checkpoints as `lit evaluate`
    would and keep the scores in `summary.json` (see `lit.evaluate.scores`), so that
    `lit evaluate` writes `eval.json` from them without loading torch again. A generator's
    evaluation (FID, possibly on another device) is left to `lit evaluate`: None."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    started = now()
    selected = load_model(run_dir, "best")
    if getattr(selected[0], "task", "classify") == "translate":
        return None
    digests = checkpoint_digests(run_dir)  # the files scored (the run is over: nothing rewrites them)
    scored = evaluate_classifier(run_dir, cfg, selected)
    summary = read_json(run_dir / "summary.json")
    summary["scores"] = {
        "revision": SCORES_REVISION, "checkpoints": digests, "result": scored,
        "provenance": provenance(torch.device("cpu"), precision="float32", started=started, finished=now()),
    }
    write_json(run_dir / "summary.json", summary)
    return scored


def evaluate_classifier(run_dir: Path, cfg: RunConfig, selected: tuple[torch.nn.Module, dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of the selected (`selected`: best.pt, already loaded) and the last model,
    and the selected model's costs."""
    data = load_data(cfg.data)
    cpu = torch.device("cpu")
    result: dict[str, Any] = {}
    test_batches = Batches(data.test, data, cfg.train.eval_batch_size)
    models = {}
    for which, label in (("best", "selected"), ("last", "last")):
        models[which], state = selected if which == "best" else load_model(run_dir, which, cpu)
        result[f"test_acc_{label}"], _ = accuracy(models[which], test_batches, cpu)
        result[f"{label}_epoch"] = state.get("epoch")
        result[f"val_acc_{label}"] = state.get("val_acc")
    model = models["best"]  # costs are those of the selected model
    result["params"] = count_parameters(model)
    result["flops"] = count_flops(model, example_input(data, 1))
    result["macs"] = result["flops"] // 2
    # speed depends on the machine's load: the speed stage times each architecture once
    # (`lit speed`, lit.evaluate.speed), from the input shape recorded here
    result["input_shape"], result["input_kind"] = list(data.input_shape), data.kind
    return result
