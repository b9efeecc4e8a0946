"""Evaluate a run directory into its `eval.json`: classifiers by accuracy, generators by FID."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from lit.config import RunConfig, from_dict
from lit.data import Batches, DataSplits, load_data
from lit.models.io import load_model
from lit.runtime.device import resolve_device
from lit.runtime.provenance import now, provenance
from lit.runtime.runlog import read_json, write_json
from lit.evaluate.accuracy import accuracy
from lit.evaluate.cost import count_flops, count_parameters
from lit.evaluate.generator import evaluate_generator


def example_input(data: DataSplits, batch: int) -> torch.Tensor:
    """A batch of the data set's input shape: normalised noise for images, ids for text."""
    if data.kind == "image":
        return torch.randn(batch, *data.input_shape)
    return torch.randint(0, 2, (batch, *data.input_shape))


def evaluate_run(run_dir: str | Path, devices: list[str] | None = None, latency_runs: int = 30,
                 throughput_batch: int = 256, fid_images: int | None = None) -> dict[str, Any]:
    """Score a finished run into its `eval.json` (and, for a generator, `samples.png`).
    A classifier gets accuracy, parameters and FLOPs (its speed comes from the speed
    stage); a generator gets FID and its latency on `devices[0]` (`latency_runs`)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = from_dict(yaml.safe_load(config_path.read_text()))
    started = now()
    result: dict[str, Any] = {"config": cfg.to_dict()}
    if (run_dir / "summary.json").exists():
        result["train"] = read_json(run_dir / "summary.json")
    selected = load_model(run_dir, "best")  # on the CPU: its task decides how the run is scored
    if getattr(selected[0], "task", "classify") == "translate":
        device = devices[0] if devices else None
        result.update(evaluate_generator(run_dir, cfg, device, fid_images, latency_runs=latency_runs))
        scored_on = resolve_device(device or cfg.train.device)
    else:
        scored_on = torch.device("cpu")
        result.update(evaluate_classifier(run_dir, cfg, selected))
        result.update(protocol_fields(cfg, result.get("train") or {}))
    # accuracy (FID) is scored in fp32 on `scored_on`; speed on every device in result["speed"]
    result["provenance"] = provenance(scored_on, precision="float32", started=started, finished=now())
    write_json(run_dir / "eval.json", result)
    return result


def protocol_fields(cfg: RunConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """How the reported numbers were obtained: the selection rule, the share of the training
    set held out, and the oracle (best test epoch, the paper's protocol) where it was logged."""
    fields: dict[str, Any] = {"selection": cfg.train.selection, "val_fraction": cfg.data.val_fraction}
    if cfg.evaluate.test_every_epoch and "oracle_test_acc" in summary:
        fields.update(test_acc_oracle=summary["oracle_test_acc"], oracle_epoch=summary.get("oracle_epoch"))
    return fields


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
