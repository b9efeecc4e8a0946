"""The `torchvision_resnet` family: torchvision's ResNet classes under the section contract,
plain torchvision checkpoints and torchvision's weights (offline), and a tiny LIT run."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from email.message import Message
from types import SimpleNamespace
from urllib.response import addinfourl

import pytest
import torch
import torchvision
from torch import nn

from conftest import digits_config
from lit.config import ConfigError
from lit.models import build_model
from lit.models.io import load_model, model_spec, save_model
from lit.models.torchvision_resnet import ARCHITECTURES, to_torchvision_keys

FAMILY = "torchvision_resnet"


def warmed_up(model: nn.Module) -> nn.Module:
    """`model` with non-trivial batch-norm statistics (so eval mode differs from fresh ones), in eval mode."""
    with torch.no_grad():
        for _ in range(2):
            model.train()(torch.randn(4, 3, 32, 32) * 2 + 1)
    return model.eval()


def save_torchvision_resnet18(path, num_classes: int = 10, drop_batch_counters: bool = False) -> nn.Module:
    """A plain torchvision ResNet-18 saved as its state dict (what a user has); returns the model."""
    torch.manual_seed(1)
    reference = warmed_up(torchvision.models.resnet18(num_classes=num_classes))
    state = reference.state_dict()
    if drop_batch_counters:  # old checkpoints (torchvision's ImageNet files among them) have none
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return reference


def test_importing_the_families_does_not_import_torchvision():
    """`lit.models` registers every family in every `lit` process; torchvision (about two
    seconds to import) loads only when this family builds a model."""
    import subprocess
    import sys

    code = "import sys, lit.models; assert 'torchvision' not in sys.modules, 'torchvision imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- architectures and depth


def test_architecture_table_is_torchvisions(monkeypatch):
    """Each named architecture is what torchvision's own builder passes to its ResNet."""
    def capture(block, layers, weights, progress, **kwargs):
        return block, layers, kwargs

    monkeypatch.setattr(torchvision.models.resnet, "_resnet", capture)
    for name, architecture in ARCHITECTURES.items():
        block, layers, kwargs = getattr(torchvision.models, name)()
        assert block.__name__ == {"basic": "BasicBlock", "bottleneck": "Bottleneck"}[architecture.block], name
        assert tuple(layers) == architecture.blocks, name
        assert kwargs.get("groups", 1) == architecture.groups, name
        assert kwargs.get("width_per_group", 64) == architecture.width_per_group, name
        assert re.search(str(architecture.depth), name), f"{name}: depth {architecture.depth}"


@pytest.mark.parametrize("depth, options, per_stage", [
    (34, {}, [3, 4, 6, 3]),
    (18, {"arch": "resnet18"}, [2, 2, 2, 2]),
    (10, {"blocks": [1, 1, 1, 1]}, [1, 1, 1, 1]),
    (14, {"blocks": [1, 1, 1, 1], "block": "bottleneck"}, [1, 1, 1, 1]),
    (50, {"groups": 32, "width_per_group": 4}, [3, 4, 6, 3]),
])
def test_depth_is_the_layer_count(depth, options, per_stage):
    model = build_model(FAMILY, depth, **options)
    assert [len(section) for section in model.sections] == per_stage
    convs_in_blocks = sum(
        1 for name, m in model.sections.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in name
    )
    assert 1 + convs_in_blocks + 1 == depth  # conv1, the blocks' convolutions, fc


@pytest.mark.parametrize("teacher, student", [
    ((34, {"arch": "resnet34"}), (18, {"blocks": [2, 2, 2, 2]})),
    ((34, {"blocks": [3, 4, 6, 3]}), (10, {"blocks": [1, 1, 1, 1], "stem": "imagenet"})),
    ((50, {"arch": "resnext50_32x4d"}), (14, {"blocks": [1, 1, 1, 1], "block": "bottleneck", "groups": 32, "width_per_group": 4})),
])
def test_teacher_and_student_sections_meet_at_every_boundary(teacher, student):
    torch.manual_seed(0)
    big = build_model(FAMILY, teacher[0], num_classes=7, **teacher[1]).eval()
    small = build_model(FAMILY, student[0], num_classes=7, **student[1]).eval()
    assert len(big.sections) == len(small.sections) == 4
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        t_feats, s_feats = big.features(x), small.features(x)
        assert [f.shape for f in t_feats] == [f.shape for f in s_feats]
        for i, section in enumerate(small.sections):  # what LIT does: student section i fed the teacher's features
            assert section(t_feats[i]).shape == t_feats[i + 1].shape
        assert small(x).shape == big(x).shape == (2, 7)
    # LIT copies the teacher's stem and head into the student
    small.stem.load_state_dict(big.stem.state_dict())
    small.head.load_state_dict(big.head.state_dict())


def test_the_parts_compose_to_torchvisions_forward():
    torch.manual_seed(0)
    model = warmed_up(build_model(FAMILY, 18, arch="resnet18"))
    plain = torchvision.models.resnet18(num_classes=10).eval()
    plain.load_state_dict(to_torchvision_keys(model.state_dict()))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = model.features(x)
        torch.testing.assert_close(model.head(feats[-1]), model(x), rtol=0, atol=0)
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_cifar_stem_keeps_the_resolution_for_four_stages():
    """digits are 1x8x8: the ImageNet stem leaves 2x2 after the max pool and 1x1 from
    layer2 on; the CIFAR stem (3x3 stride 1, no max pool) halves 8 -> 4 -> 2 -> 1 by stage."""
    x = torch.randn(2, 1, 8, 8)
    imagenet = build_model(FAMILY, 10, blocks=[1, 1, 1, 1], in_channels=1).eval()
    cifar = build_model(FAMILY, 10, blocks=[1, 1, 1, 1], in_channels=1, stem="cifar").eval()
    with torch.no_grad():
        assert [f.shape[-1] for f in imagenet.features(x)] == [2, 2, 1, 1, 1]
        assert [f.shape[-1] for f in cifar.features(x)] == [8, 8, 4, 2, 1]
    assert cifar.stem.conv1.kernel_size == (3, 3) and cifar.stem.conv1.stride == (1, 1)
    assert isinstance(cifar.stem.maxpool, nn.Identity)
    assert cifar.stem.conv1.in_channels == 1


# ---------------------------------------------------------------- weights from a .pth file


@pytest.mark.parametrize("drop_batch_counters", [False, True])
def test_a_plain_torchvision_state_dict_gives_identical_logits(tmp_path, drop_batch_counters):
    path = tmp_path / "resnet18.pth"
    reference = save_torchvision_resnet18(path, drop_batch_counters=drop_batch_counters)
    model = build_model(FAMILY, 18, arch="resnet18", num_classes=10, weights=str(path)).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_another_num_classes_replaces_the_head_and_says_so(tmp_path, caplog):
    path = tmp_path / "resnet18.pth"
    reference = save_torchvision_resnet18(path, num_classes=10)
    with caplog.at_level(logging.WARNING, logger="lit.models.torchvision_resnet"):
        model = build_model(FAMILY, 18, arch="resnet18", num_classes=5, weights=str(path))
    assert "10-class classifier" in caplog.text and "num_classes=5" in caplog.text and "fc" in caplog.text
    assert model.head.fc.weight.shape == (5, 512)
    theirs = reference.state_dict()
    for key, value in to_torchvision_keys(model.state_dict()).items():
        if not key.startswith("fc."):
            assert torch.equal(value, theirs[key]), key


def test_save_and_load_round_trip_from_the_spec_without_the_weights_file(tmp_path, caplog):
    path = tmp_path / "resnet18.pth"
    save_torchvision_resnet18(path, num_classes=10)
    options = {"in_channels": 3, "num_classes": 4, "arch": "resnet18", "stem": "imagenet", "weights": str(path)}
    model = warmed_up(build_model(FAMILY, 18, **options))
    save_model(model, model_spec(FAMILY, 18, options), tmp_path / "model.pt")
    path.unlink()  # the checkpoint holds the weights: the file they started from is no longer needed
    caplog.clear()
    loaded, state = load_model(tmp_path / "model.pt")
    assert state["spec"]["options"]["weights"] == str(path)
    assert not caplog.records  # no second head replacement
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x), rtol=0, atol=0)


# ---------------------------------------------------------------- torchvision's weights by name


class FakeUrl:
    """`urllib.request.urlopen` for torch.hub, serving `payload` for every url (no network)."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.urls = payload, []

    def __call__(self, request, *args, **kwargs):
        self.urls.append(request.full_url)
        headers = Message()
        headers["Content-Length"] = str(len(self.payload))
        return addinfourl(io.BytesIO(self.payload), headers, request.full_url, 200)


def test_weights_by_name_go_through_torchvisions_download_and_hash_check(tmp_path, monkeypatch):
    """torchvision's ResNet18_Weights.IMAGENET1K_V1, its url pointed at a local fixture whose
    name carries the fixture's own SHA-256 prefix: torch.hub's real download (urlopen
    faked), hash check and cache, then a load with the 1000-class head kept."""
    from torchvision.models import ResNet18_Weights

    fixture = tmp_path / "fixture.pth"
    reference = save_torchvision_resnet18(fixture, num_classes=1000)
    payload = fixture.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    member = ResNet18_Weights.IMAGENET1K_V1
    monkeypatch.setattr(member.value, "url", f"https://download.example/models/resnet18-{digest[:8]}.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    fake = FakeUrl(payload)
    monkeypatch.setattr(torch.hub, "urlopen", fake)
    model = build_model(FAMILY, 18, arch="resnet18", num_classes=1000, weights="IMAGENET1K_V1").eval()
    assert fake.urls == [member.url]
    assert (tmp_path / "torch-home" / "hub" / "checkpoints" / f"resnet18-{digest[:8]}.pth").is_file()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    # cached: the full name and depth alone (torchvision's resnet18) load it again without a download
    again = build_model(FAMILY, 18, num_classes=1000, weights="ResNet18_Weights.IMAGENET1K_V1").eval()
    assert len(fake.urls) == 1
    with torch.no_grad():
        torch.testing.assert_close(again(x), reference(x), rtol=0, atol=0)


def test_a_download_that_fails_torchvisions_hash_check_is_refused(tmp_path, monkeypatch):
    from torchvision.models import ResNet34_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    fake = FakeUrl(b"not the weights torchvision published")
    monkeypatch.setattr(torch.hub, "urlopen", fake)
    with pytest.raises(RuntimeError, match="invalid hash value"):
        build_model(FAMILY, 34, arch="resnet34", weights="IMAGENET1K_V1")
    assert fake.urls == [ResNet34_Weights.IMAGENET1K_V1.url]  # the real url, real hash prefix
    assert not list((tmp_path / "torch-home" / "hub" / "checkpoints").iterdir())  # nothing cached


def test_default_weights_name_resolves_to_torchvisions_member(monkeypatch):
    from torchvision.models import ResNet50_Weights

    from lit.models import torchvision_weights

    asked = []
    monkeypatch.setattr(torchvision_weights, "download", lambda member: asked.append(member) or {})
    with pytest.raises(ValueError, match="missing conv1.weight"):  # the empty state dict
        build_model(FAMILY, 50, weights="DEFAULT")
    assert asked == [ResNet50_Weights.DEFAULT] and ResNet50_Weights.DEFAULT is ResNet50_Weights.IMAGENET1K_V2


# ---------------------------------------------------------------- bad options


@pytest.mark.parametrize("depth, options, message", [
    (18, {"widths": [8, 16]}, "torchvision_resnet.*widths"),
    (18, {"blocks": [2, 2, 2, 2], "block": "basik"}, "option 'block' must be one of basic, bottleneck, got 'basik'"),
    (14, {"blocks": [2, 2, 2]}, "option 'blocks' must be a list of 4 positive integers"),
    (14, {"blocks": [2, 0, 2, 2]}, "option 'blocks' must be a positive integer, got 0"),
    (19, {"arch": "resnet19"}, "option 'arch' must be one of resnet18, .*got 'resnet19'"),
    (18, {"arch": "resnet18", "blocks": [2, 2, 2, 2]}, "option 'arch' .resnet18. fixes .*drop blocks"),
    (20, {"arch": "resnet34"}, "depth must be the network's layer count, 34 for arch resnet34.*got 20"),
    (20, {"blocks": [2, 2, 2, 2]}, r"depth must be the network's layer count, 1 \+ 2 x 8 basic blocks \+ 1 = 18.*got 20"),
    (20, {}, "depth alone must be one of 18, 34, 50, 101, 152.*got 20.*'blocks'"),
    (18, {"groups": 32}, "option 'groups' needs bottleneck blocks"),
    (18, {"stem": "tiny"}, "option 'stem' must be one of imagenet, cifar, got 'tiny'"),
    (18, {"weights": "missing/resnet18.pth"}, "option 'weights' names the file missing/resnet18.pth, which does not exist"),
    (18, {"weights": "IMAGENET9K_V1"}, "option 'weights' 'IMAGENET9K_V1' is neither a .pth file nor one of resnet18's weights"),
    (18, {"weights": "ResNet34_Weights.IMAGENET1K_V1"}, "is not one of resnet18's weights"),
    (26, {"blocks": [2, 2, 2, 2], "block": "bottleneck", "weights": "IMAGENET1K_V1"}, "exist only for torchvision's architectures"),
])
def test_bad_options_raise_naming_the_option(depth, options, message):
    with pytest.raises(ValueError, match=message):
        build_model(FAMILY, depth, **options)


def test_weights_that_do_not_fit_name_the_layers(tmp_path):
    path = tmp_path / "resnet18.pth"
    save_torchvision_resnet18(path)
    with pytest.raises(ValueError, match=re.escape("conv1.weight is [64, 3, 7, 7] there, [64, 3, 3, 3] here")):
        build_model(FAMILY, 18, weights=str(path), stem="cifar")
    with pytest.raises(ValueError, match=r"does not fit torchvision_resnet-34.*missing layer1.2"):
        build_model(FAMILY, 34, weights=str(path))
    torch.save({"model": torch.load(path, weights_only=True)}, tmp_path / "wrapped.pth")
    with pytest.raises(ValueError, match=r"must hold a plain state dict .*found \['model'\]"):
        build_model(FAMILY, 18, weights=str(tmp_path / "wrapped.pth"))


def test_a_run_config_with_a_bad_depth_is_a_config_error():
    from lit.engine.trainer import build_student

    cfg = digits_config("model.family=torchvision_resnet", "model.depth=20", "train.phases.train={epochs: 1, lr: 0.05}")
    with pytest.raises(ConfigError, match="config key 'model'.*depth alone must be one of"):
        build_student(cfg, SimpleNamespace(in_channels=1, num_classes=10))


# ---------------------------------------------------------------- LIT end to end


# a third of the digits train (the rest is the test split, unused here): the networks are 64-512 wide
DIGITS = ("model.family=torchvision_resnet", "model.options={stem: cifar}", "train.precision=fp32",
          "data.options.test_fraction=0.7")


def test_a_run_starts_from_a_weights_file_and_resumes_without_it(tmp_path):
    from lit.engine.trainer import Trainer, train

    torch.manual_seed(3)
    source = build_model(FAMILY, 10, blocks=[1, 1, 1, 1], stem="cifar", in_channels=1)
    path = tmp_path / "start.pth"
    torch.save(to_torchvision_keys(source.state_dict()), path)  # torchvision's names, as a user's file has
    cfg = digits_config(*DIGITS, "model.depth=10", "model.options.blocks=[1, 1, 1, 1]", f"model.options.weights={path}",
                        "method.name=scratch", "train.phases.train={epochs: 1, lr: 0.05}")
    fresh = Trainer(cfg, tmp_path / "fresh").student.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(fresh[key], value), key
    train(cfg, tmp_path / "run")
    path.unlink()
    Trainer(cfg, tmp_path / "run", resume=True)  # its saved state holds the weights: the file is not read
    trained, _ = load_model(tmp_path / "run", "last")
    assert not torch.equal(trained.sections[0][0].conv1.weight, source.sections[0][0].conv1.weight)


def test_lit_trains_a_torchvision_student_from_a_torchvision_teacher(tmp_path):
    from lit.engine.trainer import train

    common = DIGITS
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    train(digits_config(*common, "model.depth=18", "model.options.blocks=[2, 2, 2, 2]", "method.name=scratch",
                        "train.phases.train={epochs: 1, lr: 0.05}"), teacher_dir)
    train(digits_config(*common, "model.depth=10", "model.options.blocks=[1, 1, 1, 1]", "method.name=lit",
                        f"method.teacher={teacher_dir}", "train.phases.lit={epochs: 1, lr: 0.05}",
                        "train.phases.finetune={epochs: 1, lr: 0.01}"), student_dir)
    student, state = load_model(student_dir, "last")
    assert state["spec"]["family"] == FAMILY and [len(s) for s in student.sections] == [1, 1, 1, 1]
    lines = (student_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert {f"loss_mse_section{i}" for i in range(4)} <= set(first) and first["phase"] == "lit"
    assert all(torch.isfinite(torch.tensor(first[f"loss_mse_section{i}"])) for i in range(4))


def test_the_readme_configs_pair_a_resnet34_teacher_with_a_resnet18_student():
    from pathlib import Path

    from lit.engine.runconfig import load_run_config

    runs = Path(__file__).resolve().parents[1] / "config" / "runs"
    teacher_cfg = load_run_config(runs / "cifar10-tv-resnet34-teacher.yaml")
    student_cfg = load_run_config(runs / "cifar10-tv-resnet18-student.yaml", ["method.teacher=runs/tv-resnet34"])
    assert teacher_cfg.model.options == {"arch": "resnet34", "weights": "IMAGENET1K_V1"}
    # the teacher as `lit` rebuilds it from its checkpoint (its weights from there, not downloaded)
    teacher = build_model(FAMILY, teacher_cfg.model.depth, initial_weights=False, **teacher_cfg.model.options).eval()
    student = build_model(FAMILY, student_cfg.model.depth, **student_cfg.model.options).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert [f.shape for f in teacher.features(x)] == [f.shape for f in student.features(x)]
    student.stem.load_state_dict(teacher.stem.state_dict())
    student.head.load_state_dict(teacher.head.state_dict())
