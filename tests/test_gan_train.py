"""Training StarGAN teachers, LIT for generators, and the FID protocol, on tiny CPU runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from lit.config import ConfigError
from lit.engine import gan
from lit.runtime.checkpoint import load_checkpoint
from lit.models.io import load_model
from lit.models.stargan import StarGANGenerator
from _fixtures_gan import tiny_gan_settings


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A 4-block teacher with 2 LIT sections, 12 iterations."""
    run_dir = tmp_path_factory.mktemp("teacher")
    summary = gan.train_gan(tiny_gan_settings(depth=4, num_sections=2), run_dir)
    return run_dir, summary


@pytest.fixture(scope="module")
def student_run(tmp_path_factory, teacher_run):
    run_dir = tmp_path_factory.mktemp("student")
    settings = tiny_gan_settings(iterations=40, lr_g=1e-3, log_every=5, checkpoint_every=20)
    summary = gan.distill_generator_lit(teacher_run[0], 2, settings, run_dir)
    return run_dir, summary


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


def assert_same_state(first, second):
    """Bit-identical modules and optimiser states of two `last.pt` checkpoints."""
    a, b = load_checkpoint(first, kind="gan-state"), load_checkpoint(second, kind="gan-state")
    assert a["iteration"] == b["iteration"]
    for name in a["modules"]:
        for key, value in a["modules"][name].items():
            assert torch.equal(value, b["modules"][name][key]), f"{name}.{key} differs"
    for name in a["optimizers"]:
        for index, slots in a["optimizers"][name]["state"].items():
            for slot, value in slots.items():
                assert torch.equal(value, b["optimizers"][name]["state"][index][slot]), f"{name} {slot} differs"


# ----------------------------------------------------------------------------- the teacher


def test_teacher_run_writes_state_generator_metrics_and_summary(teacher_run):
    run_dir, summary = teacher_run
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", kind="gan-state")
    assert state["iteration"] == 12 and set(state["modules"]) == {"generator", "discriminator"}
    assert set(state["optimizers"]) == {"generator", "discriminator"}
    generator, saved = load_model(run_dir / "checkpoints" / "generator.pt")
    assert isinstance(generator, StarGANGenerator) and saved["spec"]["depth"] == 4
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == list(range(1, 13))
    assert all(math.isfinite(r["D/loss_gp"]) and math.isfinite(r["D/loss_cls"]) for r in records)
    assert "G/loss_rec" not in records[0] and "G/loss_rec" in records[1]  # G steps after every 2nd D step (n_critic 2)
    assert records[-1]["lr_g"] < records[0]["lr_g"]  # linear decay over the second half
    assert summary["status"] == "complete" and summary["params"] == sum(p.numel() for p in generator.parameters())
    assert json.loads((run_dir / "config.json").read_text())["settings"]["depth"] == 4


def test_resume_after_interruption_is_bit_identical(tmp_path, monkeypatch, teacher_run):
    settings = tiny_gan_settings(depth=4, num_sections=2)
    real_save = gan.save_checkpoint
    calls = []

    def crash_on_second_checkpoint(state, path):
        calls.append(state["iteration"])
        if len(calls) == 2:  # killed at iteration 8, after logging it, before its checkpoint
            raise KeyboardInterrupt
        real_save(state, path)

    monkeypatch.setattr(gan, "save_checkpoint", crash_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        gan.train_gan(settings, tmp_path)
    monkeypatch.setattr(gan, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["iteration"] == 4
    with pytest.raises(ConfigError, match="already holds a training state"):
        gan.train_gan(settings, tmp_path)
    with pytest.raises(ConfigError, match="differs in settings"):
        gan.train_gan(dict(settings, lambda_rec=5.0), tmp_path, resume=True)
    gan.train_gan(settings, tmp_path, resume=True)
    uninterrupted = teacher_run[0]
    assert_same_state(uninterrupted / "checkpoints" / "last.pt", tmp_path / "checkpoints" / "last.pt")
    assert without_timing(read_metrics(tmp_path)) == without_timing(read_metrics(uninterrupted))


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="unknown GAN setting 'n_crtic'"):
        gan.GANSettings.from_dict({"n_crtic": 5})
    with pytest.raises(ConfigError, match="'batch_size': expected int"):
        gan.GANSettings.from_dict({"batch_size": "16"})
    with pytest.raises(ConfigError, match="'decay_start' must be in"):
        gan.GANSettings.from_dict({"iterations": 10, "decay_start": 20})


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
    gan.copy_and_freeze_stem_head(student, teacher)
    images, labels = torch.rand(3, 3, 16, 16) * 2 - 1, torch.eye(4)[:3]
    own_feats = student.features(images, labels)
    teacher_feats = teacher.features(images, labels)
    with torch.no_grad():  # the loss the step must report: computed before its update
        expected = [
            torch.mean((section(teacher_feats[i]) - teacher_feats[i + 1]) ** 2) for i, section in enumerate(student.sections)
        ]
    student.sections = torch.nn.ModuleList(InputRecorder(section) for section in student.sections)
    optimizer = torch.optim.Adam(student.sections.parameters(), lr=1e-3)
    losses = gan.lit_step(student, teacher, optimizer, images, labels)
    for index, section in enumerate(student.sections):
        assert len(section.inputs) == 1 and torch.equal(section.inputs[0], teacher_feats[index])
    # section 1 would see something else if the student's own features were fed
    assert not torch.allclose(own_feats[1], teacher_feats[1])
    assert torch.allclose(losses["lit/section0_mse"], expected[0]) and torch.allclose(losses["lit/section1_mse"], expected[1])
    assert torch.allclose(losses["lit/loss"], expected[0] + expected[1])


def test_lit_run_keeps_stem_and_head_frozen_and_reduces_the_loss(student_run, teacher_run):
    run_dir, summary = student_run
    student, saved = load_model(run_dir / "checkpoints" / "generator.pt")
    teacher, _ = load_model(teacher_run[0] / "checkpoints" / "generator.pt")
    assert saved["spec"]["depth"] == 2 and len(student.sections) == 2
    for part in ("stem", "head"):
        for (key, value), (_, teacher_value) in zip(
            getattr(student, part).state_dict().items(), getattr(teacher, part).state_dict().items()
        ):
            assert torch.equal(value, teacher_value), f"{part}.{key} moved"
    losses = [r["lit/loss"] for r in read_metrics(run_dir)]
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0]
    assert summary["params"] < sum(p.numel() for p in teacher.parameters())


def test_lit_with_finetuning_resumes_bit_identically(tmp_path, monkeypatch, teacher_run):
    settings = tiny_gan_settings(iterations=4, finetune_iterations=4, checkpoint_every=2)
    straight = tmp_path / "straight"
    gan.distill_generator_lit(teacher_run[0], 2, settings, straight)
    real_save, calls = gan.save_checkpoint, []

    def crash_in_finetuning(state, path):
        calls.append(state["iteration"])
        if state["iteration"] == 6:
            raise KeyboardInterrupt
        real_save(state, path)

    monkeypatch.setattr(gan, "save_checkpoint", crash_in_finetuning)
    with pytest.raises(KeyboardInterrupt):
        gan.distill_generator_lit(teacher_run[0], 2, settings, tmp_path / "resumed")
    monkeypatch.setattr(gan, "save_checkpoint", real_save)
    gan.distill_generator_lit(teacher_run[0], 2, settings, tmp_path / "resumed", resume=True)
    assert_same_state(straight / "checkpoints" / "last.pt", tmp_path / "resumed" / "checkpoints" / "last.pt")
    records = read_metrics(straight)
    assert "lit/loss" in records[0] and "D/loss_gp" in records[-1] and "G/loss_rec" in records[-1]
    assert "lit/loss" not in records[-1] and records[-1]["phase"] == "finetune"


# ----------------------------------------------------------------------------- evaluation


def test_evaluation_scores_fid_cost_and_writes_a_sample_grid(student_run):
    run_dir, _ = student_run
    result = gan.evaluate_generator_run(run_dir, grid_images=3, latency_runs=3)
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
    with Image.open(run_dir / "samples.png") as grid:  # 3 rows; input + 4 targets; 16 px tiles, 1 px padding
        assert grid.size == (5 * 17 + 1, 3 * 17 + 1)
