"""`lit import-checkpoint --from lit-code`: the official LIT code's CIFAR ResNet checkpoints
become teacher run directories of the `resnet` family, with the same logits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import digits_config, randomise_batch_norms
from lit.cli import main
from lit.models.io import load_model

REPO = Path(__file__).resolve().parents[1]


# --- the official layout, written for these tests from a reading of the official code -----------

class ZeroPad(nn.Module):
    """Option A as the official code writes it: every other pixel, planes // 4 zero channels each side."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class OfficialBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = ZeroPad(planes) if stride != 1 or in_planes != planes else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class OfficialCifarResNet(nn.Module):
    """Module names conv1, bn1, layer1..layer3 (lists of blocks), linear; a 3x3 stem (the
    official one always takes 3 channels; `in_channels` lets the digits test use 1)."""

    def __init__(self, blocks: int, num_classes: int = 10, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes_in = width
        for stage, planes in enumerate((width, 2 * width, 4 * width), start=1):
            stride = 1 if stage == 1 else 2
            layer = [OfficialBlock(planes_in if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(blocks)]
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
            planes_in = planes
        self.linear = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size(3))
        return self.linear(out.flatten(1))


def official_model(blocks: int = 1, num_classes: int = 10, width: int = 16, in_channels: int = 3, size: int = 32) -> nn.Module:
    torch.manual_seed(blocks * 100 + width)
    model = OfficialCifarResNet(blocks, num_classes, width, in_channels)
    randomise_batch_norms(model, (in_channels, size, size))
    return model.eval()


def save_official(model: nn.Module, path: Path, layout: str) -> Path:
    """The state dict as a file of the official code: plain (`torch.save(model.state_dict())`),
    with DataParallel's `module.` prefix, or wrapped in a dict with training metadata."""
    state = model.state_dict()
    prefixed = {f"module.{key}": value for key, value in state.items()}
    payload = {
        "plain": state,
        "module": prefixed,
        "wrapped": {"state_dict": prefixed, "epoch": 164, "best_prec1": 93.4, "arch": "resnet"},
        "net": {"net": state, "acc": 92.1, "epoch": 150},
    }[layout]
    torch.save(payload, path)
    return path


def import_cli(file: Path, out: Path, *extra: str) -> int:
    return main(["import-checkpoint", "--from", "lit-code", str(file), "--out", str(out), *extra])


# --- the same logits -------------------------------------------------------------------------

@pytest.mark.parametrize("blocks, width, layout", [
    (1, 16, "plain"), (1, 16, "module"), (1, 16, "wrapped"), (1, 16, "net"), (2, 16, "wrapped"), (1, 8, "plain"),
])
def test_an_official_checkpoint_imports_with_the_same_logits(tmp_path, blocks, width, layout, capsys):
    official = official_model(blocks, width=width)
    file = save_official(official, tmp_path / "resnet.pth", layout)
    out = tmp_path / "runs" / "teacher"
    assert import_cli(file, out) == 0
    assert f"resnet-{6 * blocks + 2}" in capsys.readouterr().out
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = official(x)
        for which in ("best", "last"):
            model, state = load_model(out, which)
            torch.testing.assert_close(model.eval()(x), expected, atol=1e-5, rtol=1e-5)
    options = {"in_channels": 3, "num_classes": 10, **({} if width == 16 else {"widths": [width, 2 * width, 4 * width]})}
    assert state["spec"] == {"family": "resnet", "depth": 6 * blocks + 2, "options": options}
    record = json.loads((out / "import.json").read_text())
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    assert record["imported_from"]["sha256"] == digest and state["imported_from"]["sha256"] == digest
    assert record["imported_from"]["format"] == "lit-code"
    assert record["layout"]["module_prefix"] is (layout in ("module", "wrapped"))
    assert record["layout"]["wrapper_key"] == {"wrapped": "state_dict", "net": "net"}.get(layout)
    assert sorted(p.name for p in out.parent.iterdir()) == ["teacher"]  # no staging folder left


def test_a_file_without_batch_norm_step_counters_imports(tmp_path):
    """Files of PyTorch before 0.4.1 have no num_batches_tracked; eval never reads it."""
    official = official_model()
    file = tmp_path / "old.pth"
    torch.save({k: v for k, v in official.state_dict().items() if not k.endswith("num_batches_tracked")}, file)
    assert import_cli(file, tmp_path / "run") == 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "run")[0].eval()(x), official(x), atol=1e-5, rtol=1e-5)


# --- clear errors, nothing written -------------------------------------------------------------

def edit(state: dict, change: str) -> dict:
    state = dict(state)
    if change == "wrong shape":
        state["layer2.0.conv2.weight"] = torch.zeros(32, 16, 3, 3)
    elif change == "missing key":
        del state["layer2.0.bn2.running_var"]
    elif change == "option B shortcut":
        state["layer2.0.shortcut.0.weight"] = torch.zeros(32, 16, 1, 1)
    elif change == "uneven stages":
        state = {k: v for k, v in state.items() if not k.startswith("layer3.1.")}
    elif change == "imagenet layer4":
        state["layer4.0.conv1.weight"] = torch.zeros(128, 64, 3, 3)
    elif change == "not a resnet":
        state = {"embedding.weight": torch.zeros(3, 3)}
    return state


@pytest.mark.parametrize("change, message", [
    ("wrong shape", "'layer2.0.conv2.weight' is [32, 16, 3, 3], expected [32, 32, 3, 3]"),
    ("missing key", "it has no 'layer2.0.bn2.running_var'"),
    ("option B shortcut", "'layer2.0.shortcut.0.weight' has no place in it: a projection (option B) shortcut"),
    ("uneven stages", "2, 2 and 1 blocks in layer1..layer3"),
    ("imagenet layer4", "ImageNet ResNet"),
    ("not a resnet", "no 'conv1.weight'"),
])
def test_a_file_that_does_not_fit_names_the_key_and_leaves_no_run(tmp_path, change, message, capsys):
    file = tmp_path / "bad.pth"
    torch.save({f"module.{k}": v for k, v in edit(official_model(2).state_dict(), change).items()}, file)
    out = tmp_path / "runs" / "teacher"
    assert import_cli(file, out) == 1
    err = capsys.readouterr().err
    assert err.startswith("lit: error: ") and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


def test_unreadable_files_classes_and_existing_runs_are_refused(tmp_path, capsys):
    good = save_official(official_model(), tmp_path / "good.pth", "plain")
    out = tmp_path / "run"
    cases = [
        (tmp_path / "absent.pth", out, [], "does not exist"),
        (good, out, ["--num-classes", "100"], "10-class classifier"),
        (good, out, ["--from", "caffe"], "unknown checkpoint format 'caffe'"),
    ]
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:300])
    cases.append((truncated, out, [], "weights_only=True"))
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": [1, 2, 3]}, foreign)
    cases.append((foreign, out, [], "neither a state dict"))
    for file, run_dir, extra, message in cases:
        args = ["import-checkpoint", str(file), "--out", str(run_dir), *extra]
        if "--from" not in extra:
            args[1:1] = ["--from", "lit-code"]
        assert main(args) == 1, message
        err = capsys.readouterr().err
        assert message in err, (message, err)
        assert not run_dir.exists()
    assert import_cli(good, out, "--num-classes", "10") == 0
    before = (out / "checkpoints" / "best.pt").read_bytes()
    assert import_cli(save_official(official_model(2), tmp_path / "other.pth", "plain"), out) == 1
    assert "exists" in capsys.readouterr().err
    assert (out / "checkpoints" / "best.pt").read_bytes() == before


# --- accepted as a teacher -----------------------------------------------------------------------

def test_an_imported_teacher_trains_a_lit_student_on_digits(tmp_path):
    """digits is 1x8x8, so this official-layout model has a 1-channel stem (the official class
    hard-codes 3; the converter reads the channels from conv1). One epoch of each LIT phase."""
    file = save_official(official_model(2, in_channels=1, size=8), tmp_path / "digits-resnet14.pth", "wrapped")
    teacher = tmp_path / "teacher"
    assert import_cli(file, teacher, "--num-classes", "10") == 0
    student = tmp_path / "lit8"
    overrides = [
        "data.name=digits", "train.threads=1", "train.progress=off", "train.precision=fp32",
        "model.depth=8", "method.name=lit", f"method.teacher={teacher}",
        "train.phases.lit={epochs: 1, lr: 0.05, milestones: []}",
        "train.phases.finetune={epochs: 1, lr: 0.005, milestones: []}",
    ]
    digits_config(*overrides)  # the same overrides validate as a config
    assert main(["train", str(REPO / "config/runs/digits-student.yaml"), *overrides, "--run-dir", str(student)]) == 0
    assert (student / "checkpoints" / "best.pt").is_file()
    summary = json.loads((student / "summary.json").read_text())
    assert summary["best_val_acc"] is not None


def test_the_readme_command_works_verbatim(tmp_path, monkeypatch):
    """The README's import line, run as written where the official script keeps its teacher."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("\n### Teachers from the official LIT code\n"):]
    block = section[section.index("```bash\n") + len("```bash\n"):]
    lines = [line for line in block[: block.index("```")].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lit import-checkpoint "), lines
    args = lines[0].split()[1:]
    assert "method.teacher=runs/resnet110-official" in section[: section.index("\n## ")]
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    official = OfficialCifarResNet(18).eval()  # ResNet-110, the official teacher's architecture
    (tmp_path / "models").mkdir()
    torch.save(official.state_dict(), tmp_path / "models" / "resnet110.pth")
    assert main(args) == 0
    model, state = load_model(tmp_path / "runs" / "resnet110-official")
    assert state["spec"]["depth"] == 110
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), official(x), atol=1e-5, rtol=1e-5)
