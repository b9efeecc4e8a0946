"""`lit export`: ONNX checked in ONNX Runtime against PyTorch (a digits ResNet, a pruned
slimming student, a tiny text VDCNN), TorchScript reloaded and compared, atomic writes,
int8 quantisation with its accuracy recorded, the clear errors; and `lit speed --onnx`,
whose ONNX Runtime timings reach the tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import lit.evaluate.export as export_module
from test_text_pipeline import write_reviews
from conftest import digits_config
from lit.cli import main
from lit.engine.runconfig import load_run_config
from lit.engine.trainer import train
from lit.evaluate.export import ExportMismatch, comparison_batch, export_run
from lit.evaluate.run import evaluate_run
from lit.models import build_model
from lit.models.io import load_model, model_spec, save_model
from lit.report.aggregate import aggregate_runs
from lit.report.experiment_tables import summary_table, tabulate_experiment
from lit.report.markdown import summary_markdown

QUICK = ("method.name=scratch", "train.precision=fp32", "train.phases.train={epochs: 1, lr: 0.05}")
SLIMMING = ("model.depth=8", "method.name=slimming", "train.precision=fp32", "method.prune_ratio=0.5",
            "method.sparsity=1e-3", "train.phases.sparsity={epochs: 1, lr: 0.05}", "train.phases.finetune={epochs: 1, lr: 0.05}")


def trained(run_dir: Path, *overrides: str) -> Path:
    train(digits_config(*overrides), run_dir)
    evaluate_run(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A ResNet-14 teacher and a ResNet-8 student (one epoch each) and a pruned slimming
    ResNet-8, trained and evaluated, in the pipeline's layout."""
    root = tmp_path_factory.mktemp("export") / "results" / "runs" / "toy"
    return {
        "teacher": trained(root / "teacher-resnet14-s0", *QUICK, "model.depth=14"),
        "student": trained(root / "scratch-resnet8-s0", *QUICK, "model.depth=8"),
        "pruned": trained(root / "slimming-resnet8-s0", *SLIMMING),
    }


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    """A tiny VDCNN-9 on generated reviews, two epochs, evaluated."""
    root = tmp_path_factory.mktemp("text")
    write_reviews(root / "reviews" / "train.csv", 320, seed=0)
    write_reviews(root / "reviews" / "test.csv", 64, seed=1)
    cfg = load_run_config(None, [
        "data.name=csv_reviews", f"data.root={root / 'data'}", f"data.options={{path: {root / 'reviews'}, max_length: 64}}",
        "model.family=vdcnn", "model.depth=9", "model.options={embedding_dim: 8, widths: [8, 8, 16, 16], fc_width: 32, k: 4}",
        "method.name=scratch", "train.precision=fp32", "train.progress=off", "train.threads=1", "train.batch_size=32",
        "train.phases.train={epochs: 2, optimizer: adam, lr: 0.002}",
    ])
    train(cfg, root / "run")
    evaluate_run(root / "run")
    return root / "run"


def onnx_matches_pytorch(path: Path, run_dir: Path, batch: torch.Tensor) -> float:
    model, _ = load_model(run_dir)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model.eval()(batch).numpy()
    return float(np.abs(session.run(None, {"input": batch.numpy()})[0] - expected).max())


# ---------------------------------------------------------------- ONNX


def test_the_cli_exports_a_digits_resnet_that_onnx_runtime_runs_as_pytorch(runs, capsys):
    run_dir = runs["student"]
    assert main(["export", str(run_dir), "--format", "onnx"]) == 0
    path = run_dir / "exported" / "model.onnx"
    assert str(path) in capsys.readouterr().out
    record = json.loads((run_dir / "exported" / "model.onnx.json").read_text())
    assert record["format"] == "onnx" and record["opset"] == 17 and record["which"] == "best"
    assert 0 <= record["max_abs_diff"] <= 1e-4
    assert record["versions"]["torch"].startswith("2.") and record["versions"]["onnxruntime"] == ort.__version__
    assert record["input"] == {"name": "input", "shape": ["batch", 1, 8, 8], "kind": "image", "dtype": "float32"}
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version == 17
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # another batch size than the export's (the batch axis is dynamic) and other values
    batch = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    assert onnx_matches_pytorch(path, run_dir, batch) <= 1e-4
    assert sorted(p.name for p in (run_dir / "exported").iterdir()) == ["model.onnx", "model.onnx.json"]  # no temporaries


def test_a_pruned_slimming_student_exports_and_matches(runs, tmp_path):
    run_dir = runs["pruned"]
    _, state = load_model(run_dir)
    assert "pruned" in state["spec"]["options"]
    record = export_run(run_dir, "onnx", tmp_path / "pruned.onnx")
    assert record["max_abs_diff"] <= 1e-4 and record["spec"]["options"]["pruned"] == state["spec"]["options"]["pruned"]
    assert onnx_matches_pytorch(tmp_path / "pruned.onnx", run_dir, torch.randn(3, 1, 8, 8)) <= 1e-4


def test_the_last_checkpoint_has_its_own_default_file(runs):
    record = export_run(runs["teacher"], "onnx", which="last")
    assert record["which"] == "last" and (runs["teacher"] / "exported" / "model-last.onnx").is_file()


def test_a_text_vdcnn_exports_with_int64_token_ids(text_run, tmp_path):
    """ONNX Runtime computes the VDCNN as PyTorch does, except where k-max pooling meets
    equal activations at its k-th place: there torch.topk and ONNX's TopK may keep different
    positions. With ties broken by position in PyTorch too the two agree to 1e-4; without,
    an export that differs more is refused, naming the cause."""
    record = export_run(text_run, "onnx", tmp_path / "text.onnx", tolerance=float("inf"))
    assert record["input"]["kind"] == "text" and record["input"]["dtype"] == "int64"
    assert record["max_abs_diff_ties_by_position"] <= 1e-4
    model, _ = load_model(text_run)
    ids = comparison_batch(model, record["input"]["shape"][1:], "text")
    assert ids.dtype == torch.int64 and int(ids.max()) > 1  # ids over the whole vocabulary
    if record["max_abs_diff"] > 1e-4:
        with pytest.raises(ExportMismatch, match="ties .* break differently"):
            export_run(text_run, "onnx", tmp_path / "strict.onnx")
        assert not (tmp_path / "strict.onnx").exists()
    else:
        assert export_run(text_run, "onnx", tmp_path / "strict.onnx")["max_abs_diff"] <= 1e-4


# ---------------------------------------------------------------- TorchScript


def test_torchscript_export_reloads_with_torch_jit_load_and_matches(runs, tmp_path):
    run_dir = runs["student"]
    assert main(["export", str(run_dir), "--format", "torchscript", "--output", str(tmp_path / "m.pt")]) == 0
    record = json.loads((tmp_path / "m.pt.json").read_text())
    assert record["format"] == "torchscript" and record["max_abs_diff"] <= 1e-4
    model, _ = load_model(run_dir)
    with pytest.warns(FutureWarning):  # torch.jit is deprecated in torch 2.14; it still loads
        reloaded = torch.jit.load(str(tmp_path / "m.pt"))
    batch = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(reloaded(batch), model.eval()(batch), atol=1e-5)


# ---------------------------------------------------------------- atomic writes and errors


def test_a_failing_export_leaves_nothing_and_keeps_an_earlier_file(runs, tmp_path, monkeypatch):
    run_dir, output = runs["student"], tmp_path / "out" / "model.onnx"
    real_export = torch.onnx.export

    def half_written(model, args, f, **options):
        Path(f).write_bytes(b"\x08\x01half an onnx file")
        raise RuntimeError("exporter killed half-way")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(RuntimeError, match="killed half-way"):
        export_run(run_dir, "onnx", output)
    assert list(output.parent.iterdir()) == []  # no model, no record, no temporary folder

    monkeypatch.setattr(torch.onnx, "export", real_export)
    export_run(run_dir, "onnx", output)
    before = {p.name: p.read_bytes() for p in output.parent.iterdir()}
    real_outputs = export_module.onnx_outputs
    monkeypatch.setattr(export_module, "onnx_outputs", lambda session, x: real_outputs(session, x) + 1e-3)
    with pytest.raises(ExportMismatch, match="differs from PyTorch's by up to 0.001"):
        export_run(run_dir, "onnx", output)
    assert {p.name: p.read_bytes() for p in output.parent.iterdir()} == before  # the earlier export, untouched
    assert main(["export", str(run_dir), "--format", "onnx", "--output", str(output)]) == 1


def test_a_run_without_an_input_shape_gets_a_clear_error(runs, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(runs["student"], old, ignore=shutil.ignore_patterns("exported"))
    evaluation = json.loads((old / "eval.json").read_text())
    del evaluation["input_shape"]
    (old / "eval.json").write_text(json.dumps(evaluation))
    assert main(["export", str(old), "--format", "onnx"]) == 1
    assert f"records no input shape (a generator's, or written by an older lit): run `lit evaluate {old}` first" in capsys.readouterr().err
    (old / "eval.json").unlink()
    assert main(["export", str(old), "--format", "torchscript"]) == 1
    assert f"has no eval.json: run `lit evaluate {old}` first" in capsys.readouterr().err
    assert not (old / "exported").exists()


def test_quantize_is_onnx_only_and_generators_are_refused(runs, tmp_path, capsys):
    assert main(["export", str(runs["student"]), "--format", "torchscript", "--quantize", "int8"]) == 1
    assert "only int8, for onnx" in capsys.readouterr().err
    gan = tmp_path / "gan"
    gan.mkdir()
    (gan / "config.yaml").write_text("model: {family: stargan}\n")
    generator = build_model("stargan", 1, in_channels=3, num_classes=2, conv_dim=8)
    save_model(generator, model_spec("stargan", 1, {"in_channels": 3, "num_classes": 2, "conv_dim": 8}),
               gan / "checkpoints" / "best.pt")
    assert main(["export", str(gan), "--format", "onnx"]) == 1
    assert "only classifiers are exported" in capsys.readouterr().err


# ---------------------------------------------------------------- int8


def test_int8_quantisation_writes_a_smaller_model_and_records_its_accuracy(runs):
    run_dir = runs["teacher"]
    assert main(["export", str(run_dir), "--format", "onnx", "--quantize", "int8", "--calibration-images", "128"]) == 0
    path = run_dir / "exported" / "model.int8.onnx"
    record = json.loads(path.with_name("model.int8.onnx.json").read_text())
    scores = record["quantization"]
    assert scores["kind"] == "static" and scores["format"] == "QDQ" and scores["calibration"]["images"] == 128
    assert record["max_abs_diff"] <= 1e-4  # the float model it was made from matched PyTorch
    assert scores["test_acc_onnx_fp32"] == pytest.approx(scores["test_acc_torch"], abs=1e-6)
    assert 0 <= scores["test_acc_onnx_int8"] <= 1 and scores["test_images"] == 359
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    export_run(run_dir, "onnx")
    assert path.stat().st_size < 0.5 * (run_dir / "exported" / "model.onnx").stat().st_size
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((2, 1, 8, 8), np.float32)})[0].shape == (2, 10)


# ---------------------------------------------------------------- speed


def test_lit_speed_onnx_times_onnx_runtime_and_the_tables_carry_it(runs, tmp_path):
    run_dirs = [runs["teacher"], runs["student"], runs["pruned"]]
    assert main(["speed", *map(str, run_dirs), "--output", str(tmp_path / "speed.json"), "--rounds", "2",
                 "--latency-runs", "2", "--throughput-batch", "8", "--device", "cpu", "--onnx"]) == 0
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["onnx"]["opset"] == 17 and saved["onnx"]["intra_op_num_threads"] == 1
    for architecture in saved["architectures"]:
        onnx_cpu = architecture["onnxruntime-cpu"]
        assert 0 < onnx_cpu["latency_ms_batch1"]["min"] <= onnx_cpu["latency_ms_batch1"]["median"]
        assert onnx_cpu["throughput_per_s_batch8"]["median"] > 0 and architecture["onnx_max_abs_diff"] <= 1e-4
        assert set(architecture["calls_per_round"]) == {"cpu", "onnxruntime-cpu"}
    table = aggregate_runs(run_dirs, speed=[tmp_path / "speed.json"])
    student = table[table["run_id"] == "scratch-resnet8-s0"].iloc[0]
    resnet8 = next(a for a in saved["architectures"] if a["label"] == "resnet8")
    assert student["latency_ms_onnx_cpu"] == resnet8["onnxruntime-cpu"]["latency_ms_batch1"]["min"]  # the fastest round
    assert student["latency_ms_cpu"] == resnet8["cpu"]["latency_ms_batch1"]["min"]
    summary = summary_table(tabulate_experiment(table))
    assert summary["latency_ms_onnx_cpu"].notna().all()
    assert "ONNX Runtime latency (ms, batch 1)" in summary_markdown("toy", summary)


def test_without_onnx_the_speed_stage_and_tables_are_as_before(runs, tmp_path):
    run_dirs = [runs["teacher"], runs["student"]]
    assert main(["speed", *map(str, run_dirs), "--output", str(tmp_path / "speed.json"), "--rounds", "1",
                 "--latency-runs", "2", "--throughput-batch", "8", "--device", "cpu"]) == 0
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert "onnx" not in saved
    assert all(set(a) == {"label", "spec", "runs", "cpu", "calls_per_round"} for a in saved["architectures"])
    assert all(set(a["calls_per_round"]) == {"cpu"} for a in saved["architectures"])
    table = aggregate_runs(run_dirs, speed=[tmp_path / "speed.json"])
    assert table["latency_ms_onnx_cpu"].isna().all() and table["latency_ms_cpu"].notna().all()
    summary = summary_table(tabulate_experiment(table))
    assert "ONNX Runtime" not in summary_markdown("toy", summary)
