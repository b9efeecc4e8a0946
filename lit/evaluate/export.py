"""Export a run's model for deployment: ONNX (checked in ONNX Runtime) or TorchScript.

`export_run(RUN, "onnx")` writes the run's selected (or last) classifier as
`RUN/exported/model.onnx` and a record beside it (`model.onnx.json`):

- Exporter: PyTorch's TorchScript-based exporter, `torch.onnx.export(..., dynamo=False)`.
  On torch 2.14 it exported every classifier family tried (ResNet, ResNeXt, VDCNN, pruned
  networks, torchvision's ResNet and ViT) in 0.3-2.4 s; the `dynamo=True` exporter gave
  the same outputs to float precision but took 4-8 s a model and needs the extra
  `onnxscript` package. PyTorch marks
  the TorchScript exporter deprecated; the warning is silenced here, the pin on torch keeps
  it working.
- Opset 17 (`OPSET`): supported by ONNX Runtime since 1.11 and by the usual deployment
  runtimes; every operator our families use exists there. The batch axis is dynamic
  (`batch`), the others are the input shape `lit evaluate` recorded in eval.json
  (`input_shape`; `input_kind` "image": float32 standardised pixels, "text": int64 ids).
- Check: the exported file is loaded in ONNX Runtime (CPU execution provider) and run on a
  fixed batch (seeded; 4 items, and its first item alone, so the dynamic batch axis is
  exercised) beside PyTorch; the largest absolute output difference is recorded and must
  not exceed `tolerance` (1e-4 for fp32), else nothing is written.
- Atomic: everything is built in a temporary folder beside the output and renamed into
  place only after the check, so a failure leaves the previous files (or none).
- `quantize="int8"`: ONNX Runtime's static quantisation (QDQ format, int8 weights per
  channel, uint8 activations, MinMax calibration on `calibration_images` training images
  of the run's own split). Dynamic quantisation was measured and rejected: it rewrites
  convolutions as ConvInteger with activations quantised at run time, which made digits
  ResNets about 5x slower than float in ONNX Runtime (ResNet-32: 1.72 ms against 0.37 ms
  at batch 1, one thread), where static QDQ was as fast or faster (0.18 ms) at equal test
  accuracy (`benchmarks/onnx_quantisation.py`). Pre-processing the float model
  (`quant_pre_process`) made no difference there and is not done. The record carries
  the test accuracy of PyTorch, of the float ONNX model and of the int8 model on the
  run's test split.

VDCNN's k-max pooling selects the k largest activations of each channel: where several
are equal at the k-th place (ReLU zeros in a channel with fewer than k positive values),
`torch.topk` and ONNX's TopK (lowest position first) may keep different ones, and the
kept values then come out in another order. The check reports such a difference with the
difference PyTorch shows when its ties are broken the ONNX way.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import yaml
from torch import nn

from lit.config import from_dict
from lit.data import Batches, DataSplits, load_data
from lit.evaluate.accuracy import accuracy
from lit.models.io import load_model
from lit.models.vdcnn import KMaxPool
from lit.runtime.provenance import now
from lit.runtime.runlog import read_json, write_json

FORMATS = ("onnx", "torchscript")
QUANTIZATIONS = ("int8",)
OPSET = 17
TOLERANCE = 1e-4
COMPARE_BATCH = 4
COMPARE_SEED = 0
CALIBRATION_IMAGES = 256
INPUT_NAME, OUTPUT_NAME = "input", "output"
EXPORTER = "torch.onnx.export(dynamo=False)"


class ExportMismatch(RuntimeError):
    """The exported model does not compute what the PyTorch model computes."""


def default_output(run_dir: str | Path, format: str, which: str = "best", quantize: str | None = None) -> Path:
    """`RUN/exported/model.onnx` (`model.pt` for TorchScript; `model-last.*` for the last
    checkpoint; `model.int8.onnx` for a quantised model)."""
    stem = "model" if which == "best" else f"model-{which}"
    suffix = ".pt" if format == "torchscript" else (f".{quantize}.onnx" if quantize else ".onnx")
    return Path(run_dir) / "exported" / (stem + suffix)


def recorded_input(run_dir: Path) -> tuple[list[int], str]:
    """The input shape (without the batch axis) and kind that `lit evaluate` recorded."""
    eval_path = run_dir / "eval.json"
    if not eval_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no eval.json: run `lit evaluate {run_dir}` first (the export reads the input shape from it)")
    evaluation = read_json(eval_path)
    if "input_shape" not in evaluation or "input_kind" not in evaluation:
        raise ValueError(f"{eval_path} records no input shape (a generator's, or written by an older lit): "
                         f"run `lit evaluate {run_dir}` first")
    return list(evaluation["input_shape"]), evaluation["input_kind"]


def comparison_batch(model: nn.Module, input_shape: list[int], kind: str, batch: int = COMPARE_BATCH,
                     seed: int = COMPARE_SEED) -> torch.Tensor:
    """A fixed, seeded batch: standard normal values for images (what standardised pixels
    look like), token ids drawn over the whole vocabulary of the model's embedding for text."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "image":
        return torch.randn(batch, *input_shape, generator=generator)
    if kind != "text":
        raise ValueError(f"unknown input kind {kind!r} (expected 'image' or 'text')")
    embeddings = [module for module in model.modules() if isinstance(module, nn.Embedding)]
    vocabulary = embeddings[0].num_embeddings if embeddings else 2
    return torch.randint(0, vocabulary, (batch, *input_shape), generator=generator, dtype=torch.int64)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> None:
    """Write `model` (eval mode, CPU, fp32) as ONNX at opset `OPSET` with a dynamic batch axis."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice; tracer notes on shape checks
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def onnx_session(path: str | Path, threads: int | None = None, provider: str = "CPUExecutionProvider",
                 provider_options: dict[str, Any] | None = None):
    """An ONNX Runtime session on one execution provider (`threads`: intra-op threads;
    None leaves ONNX Runtime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=[(provider, provider_options or {})])


def onnx_outputs(session, inputs: torch.Tensor) -> np.ndarray:
    return session.run([OUTPUT_NAME], {INPUT_NAME: inputs.numpy()})[0]


def largest_difference(reference: Callable[[torch.Tensor], torch.Tensor], exported: Callable[[torch.Tensor], np.ndarray],
                       batch: torch.Tensor) -> float:
    """The largest absolute output difference on `batch` and on its first item alone."""
    worst = 0.0
    with torch.no_grad():
        for inputs in (batch, batch[:1]):
            expected = reference(inputs).float().numpy()
            got = np.asarray(exported(inputs), dtype=np.float32)
            if got.shape != expected.shape:
                raise ExportMismatch(f"the exported model's output has shape {got.shape}, PyTorch's {expected.shape}")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def position_ties(inputs: torch.Tensor, k: int) -> torch.Tensor:
    """k-max pooling with ties broken as ONNX's TopK does (the lowest position first)."""
    order = torch.sort(inputs, dim=2, descending=True, stable=True).indices[..., :k]
    return inputs.gather(2, order.sort(dim=2).values)


@contextmanager
def ties_by_position(model: nn.Module) -> Iterator[None]:
    """While active, every k-max pooling of `model` breaks ties by position (a diagnosis of
    a mismatch; the model itself is not changed)."""
    def hook(module: KMaxPool, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        return position_ties(x, module.k if module.k is not None else (x.shape[2] + 1) // 2)

    handles = [module.register_forward_hook(hook) for module in model.modules() if isinstance(module, KMaxPool)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def has_k_max_pooling(model: nn.Module) -> bool:
    return any(isinstance(module, KMaxPool) for module in model.modules())


def check_onnx(model: nn.Module, session, batch: torch.Tensor, tolerance: float) -> dict[str, Any]:
    """Compare ONNX Runtime with PyTorch on `batch`; raise `ExportMismatch` beyond `tolerance`."""
    found = {"max_abs_diff": largest_difference(model, lambda x: onnx_outputs(session, x), batch)}
    if has_k_max_pooling(model):
        with ties_by_position(model):
            found["max_abs_diff_ties_by_position"] = largest_difference(model, lambda x: onnx_outputs(session, x), batch)
    if not found["max_abs_diff"] <= tolerance:  # NaN fails too
        message = (f"ONNX Runtime's output differs from PyTorch's by up to {found['max_abs_diff']:.3g} on the "
                   f"comparison batch (tolerance {tolerance:g})")
        if "max_abs_diff_ties_by_position" in found:
            message += (f"; the model has k-max pooling, whose ties (equal activations, such as ReLU zeros) torch.topk "
                        f"and ONNX TopK break differently: with ties broken by position, as ONNX does, the difference "
                        f"is {found['max_abs_diff_ties_by_position']:.3g}. Pass --tolerance to accept it")
        raise ExportMismatch(message)
    return found


def versions() -> dict[str, str | None]:
    found = {}
    for name in ("torch", "onnx", "onnxruntime"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def export_run(run_dir: str | Path, format: str = "onnx", output: str | Path | None = None, which: str = "best",
               quantize: str | None = None, tolerance: float = TOLERANCE,
               calibration_images: int = CALIBRATION_IMAGES) -> dict[str, Any]:
    """Export a run's `which` model (see the module docstring); returns the record written
    beside the file (`<output>.json`)."""
    run_dir = Path(run_dir)
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {format!r}")
    if quantize is not None and (format != "onnx" or quantize not in QUANTIZATIONS):
        raise ValueError(f"--quantize {quantize} is not available for {format}: only int8, for onnx")
    if which not in ("best", "last"):
        raise ValueError(f"--which must be best or last, got {which!r}")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    if calibration_images < 1:
        raise ValueError("calibration_images must be positive")
    started = now()
    model, state = load_model(run_dir, which, "cpu")
    if getattr(model, "task", "classify") != "classify":
        raise ValueError(f"{run_dir} holds a {model.__class__.__name__} (task {model.task!r}): "
                         "only classifiers are exported (a generator takes two inputs)")
    model.eval().float()
    input_shape, kind = recorded_input(run_dir)
    batch = comparison_batch(model, input_shape, kind)
    output = Path(output) if output is not None else default_output(run_dir, format, which, quantize)
    output.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format": format, "file": output.name, "run_dir": str(run_dir), "which": which, "epoch": state.get("epoch"),
        "spec": state["spec"],
        "input": {"name": INPUT_NAME, "shape": ["batch", *input_shape], "kind": kind,
                  "dtype": "float32" if kind == "image" else "int64"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", "classes"], "what": "logits"},
        "comparison": {"batch": COMPARE_BATCH, "seed": COMPARE_SEED, "tolerance": tolerance,
                       "reference": "PyTorch fp32 on the CPU"},
        "versions": versions(),
    }
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as scratch:
        staged = Path(scratch) / output.name
        if format == "torchscript":
            record.update(stage_torchscript(model, batch, staged, tolerance))
        else:
            record.update(opset=OPSET, exporter=EXPORTER, runtime="onnxruntime, CPUExecutionProvider")
            float_path = Path(scratch) / "float.onnx" if quantize else staged
            export_onnx(model, batch, float_path)
            record.update(check_onnx(model, onnx_session(float_path, torch.get_num_threads()), batch, tolerance))
            if quantize:
                record["quantization"] = stage_int8(model, run_dir, float_path, staged, calibration_images)
        record["created"] = {"started": started, "finished": now()}
        os.replace(staged, output)
    write_json(output.with_name(output.name + ".json"), record)
    return record


def stage_torchscript(model: nn.Module, batch: torch.Tensor, path: Path, tolerance: float) -> dict[str, Any]:
    """Trace `model` to `path` and check the reloaded file against it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; tracer notes
        with torch.no_grad():
            traced = torch.jit.trace(model, (batch,))
        torch.jit.save(traced, str(path))
        reloaded = torch.jit.load(str(path), map_location="cpu")
        difference = largest_difference(model, reloaded, batch)
    if not difference <= tolerance:
        raise ExportMismatch(f"the reloaded TorchScript model differs from PyTorch's by up to {difference:.3g} "
                             f"(tolerance {tolerance:g})")
    return {"exporter": "torch.jit.trace", "max_abs_diff": difference}


def run_data(run_dir: Path) -> tuple[Any, DataSplits]:
    cfg = from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    return cfg, load_data(cfg.data)


def stage_int8(model: nn.Module, run_dir: Path, float_path: Path, path: Path, calibration_images: int) -> dict[str, Any]:
    """Quantise `float_path` statically to int8 at `path`, calibrated on training images of
    the run's split, and score PyTorch, float and int8 models on the test split."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    cfg, data = run_data(run_dir)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(COMPARE_SEED))
    chosen = data.train.subset(order[:calibration_images])
    calibration = [inputs.numpy() for inputs, _ in Batches(chosen, data, 64)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            inputs = next(self.batches, None)
            return None if inputs is None else {INPUT_NAME: inputs}

    logging.disable(logging.WARNING)  # its advice to pre-process: measured, no faster (docstring)
    try:
        quantize_static(str(float_path), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.disable(logging.NOTSET)
    threads = torch.get_num_threads()
    test = Batches(data.test, data, cfg.train.eval_batch_size)
    float_predictions = onnx_predictions(onnx_session(float_path, threads), test)
    int8_predictions = onnx_predictions(onnx_session(path, threads), test)
    labels = data.test.labels.numpy()
    return {
        "kind": "static", "format": "QDQ", "weights": "int8, per channel", "activations": "uint8, per tensor",
        "calibration": {"method": "MinMax", "images": len(chosen), "split": "train", "seed": COMPARE_SEED},
        "test_images": len(labels),
        "test_acc_torch": accuracy(model, test, torch.device("cpu"))[0],
        "test_acc_onnx_fp32": float((float_predictions == labels).mean()),
        "test_acc_onnx_int8": float((int8_predictions == labels).mean()),
        "test_agreement_int8_fp32": float((int8_predictions == float_predictions).mean()),  # same top-1 class
    }


def onnx_predictions(session, batches: Batches) -> np.ndarray:
    """The top-1 class of every item of `batches`, in order."""
    predictions = [onnx_outputs(session, inputs).argmax(1) for inputs, _ in batches]
    if not predictions:
        raise ValueError("cannot measure accuracy on an empty split")
    return np.concatenate(predictions)
