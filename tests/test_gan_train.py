"""StarGAN teachers (method `stargan`) and LIT for generators (method `gan_lit`) through the
one engine: run layout, resume after SIGKILL, NaN stop, LIT's feeding, and evaluation."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from _fixtures_gan import GAN_CONFIG, student_overrides, tiny_gan_overrides
from lit.config import ConfigError
from lit.engine.runconfig import load_run_config
from lit.engine.trainer import TrainingDiverged, train
from lit.evaluate.run import evaluate_run
from lit.methods.base import MethodContext, Step
from lit.methods.gan_lit import GeneratorLIT
from lit.models.io import load_model
from lit.models.stargan import StarGANGenerator
from lit.runtime.checkpoint import load_checkpoint



LIT = Path(sys.executable).parent / "lit"


def gan_config(*overrides: str):
    return load_run_config(GAN_CONFIG, list(overrides))


@pytest.fixture(scope="session")  # built once per worker, which may run other modules in between
def teacher_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    return run_dir, train(gan_config(*tiny_gan_overrides()), run_dir)


@pytest.fixture(scope="session")  # built once per worker, which may run other modules in between
def student_run(tmp_path_factory, teacher_run):
    run_dir = tmp_path_factory.mktemp("student") / "run"
    return run_dir, train(gan_config(*student_overrides(teacher_run[0])), run_dir)


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in ("images_per_s", "seconds")} for r in records]


def assert_same_state(first: Path, second: Path) -> None:
    """Bit-identical model, discriminator and optimiser states of two runs' state.pt."""
    a, b = (load_checkpoint(run / "checkpoints" / "state.pt", kind="train-state") for run in (first, second))
    assert a["progress"] == b["progress"]
    for part in ("model", "extra"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs"
    assert set(a["optimizers"]) == set(b["optimizers"])
    for name, optimizer in a["optimizers"].items():
        for index, slots in optimizer["state"].items():
            for slot, value in slots.items():
                assert torch.equal(value, b["optimizers"][name]["state"][index][slot]), f"{name} {slot} differs"


# ----------------------------------------------------------------------------- the teacher


def test_teacher_run_has_the_common_layout_and_the_stargan_updates(teacher_run):
    run_dir, summary = teacher_run
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints/state.pt", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), name
    state = load_checkpoint(run_dir / "checkpoints" / "state.pt", kind="train-state")
    assert state["progress"]["iteration"] == 12 and set(state["optimizers"]) == {"generator", "discriminator"}
    assert any(key.startswith("discriminator.") for key in state["extra"]), "the method's discriminator is checkpointed"
    generator, saved = load_model(run_dir, "last")
    assert isinstance(generator, StarGANGenerator) and saved["spec"]["depth"] == 4 and saved["iteration"] == 12
    best, _ = load_model(run_dir, "best")  # nothing to select on: best is the last model
    assert all(torch.equal(v, best.state_dict()[k]) for k, v in generator.state_dict().items())
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == list(range(1, 13))
    assert all(math.isfinite(r["loss_D_gp"]) and math.isfinite(r["loss_D_cls"]) for r in records)
    assert "loss_G_rec" not in records[0] and "loss_G_rec" in records[1]  # G steps after every 2nd D step (n_critic 2)
    assert records[-1]["lr"] < records[0]["lr"] and records[-1]["lr_discriminator"] == records[-1]["lr"]  # linear decay
    assert summary["status"] == "complete" and summary["best_val_acc"] is None
    assert summary["params"] == sum(p.numel() for p in generator.parameters())
    assert load_run_config(run_dir / "config.yaml").method.name == "stargan"


def test_group_lr_sets_the_discriminators_rate(tmp_path):
    train(gan_config(*tiny_gan_overrides("train.phases.gan.iterations=2", "train.phases.gan.group_lr={discriminator: 4.0e-4}")),
          tmp_path / "run")
    record = read_metrics(tmp_path / "run")[0]
    assert record["lr"] == pytest.approx(1e-4) and record["lr_discriminator"] == pytest.approx(4e-4)


def lit_train(run_dir: Path, overrides: list[str], resume: bool = False) -> subprocess.Popen:
    command = [str(LIT), "train", str(GAN_CONFIG), *overrides, "--run-dir", str(run_dir), *(["--resume"] if resume else [])]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def kill_after_first_checkpoint(run_dir: Path, overrides: list[str]) -> None:
    process = lit_train(run_dir, overrides)
    state = run_dir / "checkpoints" / "state.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state.exists(), "the run never checkpointed"
    assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed: lengthen it"


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_sigkilled_run_resumes_to_the_same_final_weights(role, teacher_run, tmp_path):
    if role == "teacher":
        overrides = tiny_gan_overrides("train.phases.gan.iterations=60", "train.log_every=10", "train.checkpoint_every=10")
    else:  # through both phases: LIT, then adversarial fine-tuning against the teacher's discriminator
        overrides = student_overrides(teacher_run[0], "train.phases.lit.iterations=30", "train.phases.finetune.iterations=30",
                                      "train.checkpoint_every=10", "train.log_every=10")
    reference = tmp_path / "straight"
    train(gan_config(*overrides), reference)
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(killed, overrides)
    with pytest.raises(ConfigError, match="already holds a training state"):  # a fresh start over a saved state
        train(gan_config(*overrides), killed)
    resumed = lit_train(killed, overrides, resume=True)
    assert resumed.wait() == 0, resumed.stderr.read()
    assert_same_state(reference, killed)
    for which in ("best", "last"):
        a, b = load_model(reference, which)[0].state_dict(), load_model(killed, which)[0].state_dict()
        assert all(torch.equal(value, b[key]) for key, value in a.items()), which
    assert without_timing(read_metrics(killed)) == without_timing(read_metrics(reference))


def test_resume_refuses_a_changed_config(teacher_run, tmp_path):
    with pytest.raises(ConfigError, match=r"differs in method.lambda_rec \(10.0 -> 5.0\)"):
        train(gan_config(*tiny_gan_overrides("method.lambda_rec=5")), teacher_run[0], resume=True)


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_a_diverging_gan_stops_with_a_clear_error_and_keeps_its_checkpoint(role, teacher_run, tmp_path):
    """Real divergence, no patching: a gradient-penalty weight past float32's range makes the
    teacher's discriminator loss infinite; a learning rate of 1e30 blows up the student."""
    if role == "teacher":
        overrides = tiny_gan_overrides("method.lambda_gp=1e39")
        expected = r"loss became inf in phase 'gan', iteration 1 \(.*D_gp=inf"
    else:
        overrides = student_overrides(teacher_run[0], "train.phases.lit.lr=1e30", "train.checkpoint_every=1")
        expected = r"loss became (nan|inf) in phase 'lit', iteration \d+ .*Lower the learning rate"
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=expected):
        train(gan_config(*overrides), run_dir)
    assert not (run_dir / "summary.json").exists()
    if role == "student":  # the last complete checkpoint is finite
        model, _ = load_model(run_dir, "last")
        assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_bad_gan_keys_and_files_are_named():
    with pytest.raises(ConfigError, match="unknown config key 'method.n_crtic'"):
        gan_config("method.n_crtic=5")
    with pytest.raises(ConfigError, match="'method.n_critic': expected int"):
        gan_config("method.n_critic=five")
    with pytest.raises(ConfigError, match="train.phases.gan.decay_start"):
        gan_config("train.phases.gan.iterations=10", "train.phases.gan.decay_start=20")
    with pytest.raises(ConfigError, match=r"'data.val_fraction' is 0.0 \(no validation split\), so method 'scratch' has nothing to select"):
        gan_config("method.name=scratch", "train.phases.train={epochs: 1}")


def test_malformed_gan_yaml_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: {name: stargan\ntrain: [")
    result = subprocess.run([str(LIT), "train", str(bad), "--run-dir", str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 2 and "is not valid YAML" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_retired_gan_verbs_name_their_replacement():
    result = subprocess.run([str(LIT), "distill-gan", "x"], capture_output=True, text=True)
    assert result.returncode == 2 and "method.name=gan_lit" in result.stderr


# ----------------------------------------------------------------------------- LIT for the generator


class InputRecorder(torch.nn.Module):
    def __init__(self, section: torch.nn.Module) -> None:
        super().__init__()
        self.section, self.inputs = section, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.section(x)


def test_lit_feeds_each_student_section_the_teachers_features():
    torch.manual_seed(0)
    teacher = StarGANGenerator(repeat_num=4, conv_dim=8, c_dim=4, num_sections=2).eval()
    student = StarGANGenerator(repeat_num=2, conv_dim=8, c_dim=4, num_sections=2)
    cfg = gan_config("method.name=gan_lit", "method.teacher=unused").method
    method = GeneratorLIT(cfg, student, teacher, MethodContext((3, 16, 16), ("lit",)))
    assert all(torch.equal(v, teacher.stem.state_dict()[k]) for k, v in student.stem.state_dict().items())
    images, labels = torch.rand(3, 3, 16, 16) * 2 - 1, torch.eye(4)[:3]
    step = Step("lit", 0, 0.0, torch.Generator().manual_seed(5))
    targets = labels[torch.randperm(3, generator=torch.Generator().manual_seed(5))]  # the targets the step draws
    teacher_feats = teacher.features(images, targets)
    own_feats = student.features(images, targets)
    with torch.no_grad():
        expected = [torch.mean((s(teacher_feats[i]) - teacher_feats[i + 1]) ** 2) for i, s in enumerate(student.sections)]
    student.sections = torch.nn.ModuleList(InputRecorder(section) for section in student.sections)
    (update,) = list(method.updates(step, images, labels))
    assert update.group == "generator" and set(update.terms) == {"mse_section0", "mse_section1"}
    for index, section in enumerate(student.sections):
        assert len(section.inputs) == 1 and torch.equal(section.inputs[0], teacher_feats[index])
    assert not torch.allclose(own_feats[1], teacher_feats[1])  # the student's own features would differ
    assert torch.allclose(update.terms["mse_section0"], expected[0]) and torch.allclose(update.terms["mse_section1"], expected[1])
    groups = method.param_groups("lit")
    assert set(groups) == {"generator"} and {id(p) for p in groups["generator"]} == {id(p) for p in student.sections.parameters()}


def test_lit_run_keeps_stem_and_head_frozen_and_reduces_the_loss(student_run, teacher_run):
    run_dir, summary = student_run
    student, saved = load_model(run_dir, "last")
    teacher, _ = load_model(teacher_run[0], "best")
    assert saved["spec"]["depth"] == 2 and len(student.sections) == 2
    for part in ("stem", "head"):
        for (key, value), (_, teacher_value) in zip(getattr(student, part).state_dict().items(), getattr(teacher, part).state_dict().items()):
            assert torch.equal(value, teacher_value), f"{part}.{key} moved"
    losses = [r["loss"] for r in read_metrics(run_dir)]
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0]
    assert summary["params"] < sum(p.numel() for p in teacher.parameters())


def test_finetuning_needs_the_teachers_run_directory(teacher_run, tmp_path):
    checkpoint_only = str(teacher_run[0] / "checkpoints" / "best.pt")
    with pytest.raises(ConfigError, match="needs the teacher's discriminator"):
        train(gan_config(*student_overrides(checkpoint_only, "train.phases.finetune.iterations=2")), tmp_path / "run")


# ----------------------------------------------------------------------------- evaluation


def test_evaluation_scores_fid_cost_and_writes_a_sample_grid(student_run):
    run_dir, _ = student_run
    result = evaluate_run(run_dir, latency_runs=3)
    assert json.loads((run_dir / "eval.json").read_text()) == json.loads(json.dumps(result))
    assert result["fid_real_images"] == 4 and result["fid_fake_images"] == 16  # 4 images x 4 attributes
    assert math.isfinite(result["fid"]) and result["fid"] > 0
    assert result["exclusive_attributes"] == ["red", "green", "blue"]
    # by hand, 2 FLOPs a multiply-add (c_in * c_out * k * k per position; a transposed conv
    # counts its input positions): conv_dim 16, 4 attributes, 16 px, 2 residual blocks
    stem = 7 * 16 * 49 * 16 * 16 + 16 * 32 * 16 * 8 * 8 + 32 * 64 * 16 * 4 * 4
    blocks = 2 * 2 * 64 * 64 * 9 * 4 * 4
    head = 64 * 32 * 16 * 4 * 4 + 32 * 16 * 16 * 8 * 8 + 16 * 3 * 49 * 16 * 16
    assert result["flops"] == 2 * (stem + blocks + head) and result["macs"] == stem + blocks + head
    assert result["speed"]["cpu"]["latency_ms_batch1"] > 0 and result["params"] == result["train"]["params"]
    assert result["config"]["method"]["name"] == "gan_lit"
    with Image.open(run_dir / "samples.png") as grid:  # 8 rows; input + 4 targets; 16 px tiles, 1 px padding
        assert grid.size == (5 * 17 + 1, 8 * 17 + 1)
