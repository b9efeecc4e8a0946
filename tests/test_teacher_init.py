"""Students initialised from their teacher's blocks (`method.student_init: teacher_blocks`)."""

from __future__ import annotations

import pytest
import torch

from conftest import digits_config
from lit.config import ConfigError
from lit.engine.runconfig import config_hash
from lit.engine.trainer import Trainer
from lit.models import build_model
from lit.models.io import load_model
from lit.models.teacher_init import chosen_blocks, init_from_teacher_blocks, teacher_block_map

PHASE = "train.phases.train={epochs: 1, lr: 0.05}"


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(("teacher", "student", "choice", "expected"), [
    (5, 2, "first", [0, 1]), (5, 2, "last", [3, 4]), (5, 2, "spaced", [0, 4]),
    (5, 3, "spaced", [0, 2, 4]), (6, 3, "spaced", [0, 2, 5]), (5, 1, "spaced", [0]), (5, 1, "last", [4]),
    (3, 3, "spaced", [0, 1, 2]), (2, 4, "first", [0, 1]),
])
def test_which_teacher_blocks_a_section_starts_from(teacher, student, choice, expected):
    assert chosen_blocks(teacher, student, choice) == expected


def test_blocks_are_copied_where_their_shapes_match_and_the_rest_stay_fresh():
    torch.manual_seed(0)
    teacher = build_model("resnet", 32, num_classes=10, in_channels=3)  # 5 blocks per section
    student = build_model("resnet", 14, num_classes=10, in_channels=3)  # 2 blocks per section
    assert teacher_block_map(student, teacher, "spaced") == [[0, 4], [0, 4], [0, 4]]
    # the first block of sections 1 and 2 widens the features: teacher block 3 cannot start it
    assert teacher_block_map(student, teacher, "last") == [[3, 4], [None, 4], [None, 4]]
    fresh = [[block.state_dict() for block in section] for section in student.sections]
    mapping = init_from_teacher_blocks(student, teacher, "last")
    for row, student_section, teacher_section, before in zip(mapping, student.sections, teacher.sections, fresh):
        for index, source in enumerate(row):
            block = student_section[index]
            if source is None:  # left as it was
                assert all(torch.equal(block.state_dict()[k], v) for k, v in before[index].items())
            else:
                assert same(block, teacher_section[source])
    # stem and head are not this option's (LIT copies them itself)
    assert not same(student.stem, teacher.stem)
    resumed = build_model("resnet", 14, num_classes=10, in_channels=3)
    untouched = [p.clone() for p in resumed.parameters()]
    assert init_from_teacher_blocks(resumed, teacher, "spaced", copy=False) == [[0, 4], [0, 4], [0, 4]]
    assert all(torch.equal(p, q) for p, q in zip(resumed.parameters(), untouched))


def test_a_run_starts_its_student_from_the_teacher_blocks_and_records_which(digits_teacher, tmp_path):
    teacher, _ = load_model(digits_teacher, "best", torch.device("cpu"))  # ResNet-14: 2 blocks per section
    cfg = digits_config("model.depth=8", "method.name=kd", f"method.teacher={digits_teacher}", PHASE,
                        "method.student_init=teacher_blocks", "method.student_init_blocks=last")
    trainer = Trainer(cfg, tmp_path / "run")
    # one student block per section: the teacher's last where it keeps the shapes (section 0 only)
    assert trainer.student_init == [[1], [None], [None]]
    for row, student_section, teacher_section in zip(trainer.student_init, trainer.student.sections, teacher.sections):
        if row[0] is not None:
            assert same(student_section[0], teacher_section[row[0]])
    fresh = Trainer(digits_config("model.depth=8", "method.name=kd", f"method.teacher={digits_teacher}", PHASE), tmp_path / "fresh")
    assert fresh.student_init is None and not same(fresh.student.sections[0][0], teacher.sections[0][1])


def test_the_option_changes_the_ids_of_the_runs_that_read_it_only(digits_teacher):
    teacher = f"method.teacher={digits_teacher}"
    for method, reads in (("kd", True), ("lit", True), ("scratch", False)):
        phases = ("train.phases.lit={epochs: 1}", "train.phases.finetune={epochs: 1}") if method == "lit" else (PHASE,)
        base = digits_config(f"method.name={method}", teacher, *phases)
        changed = digits_config(f"method.name={method}", teacher, *phases, "method.student_init=teacher_blocks")
        assert (config_hash(base) != config_hash(changed)) == reads, method
    # the default spelled out leaves the id as it was before the option existed
    assert config_hash(digits_config("method.name=kd", teacher, PHASE, "method.student_init=fresh")) == \
        config_hash(digits_config("method.name=kd", teacher, PHASE))


def test_a_teacher_of_another_family_is_refused_by_name(digits_teacher, tmp_path):
    cfg = digits_config("model.family=resnext", "model.depth=11", "method.name=kd", f"method.teacher={digits_teacher}",
                        "method.student_init=teacher_blocks", PHASE)
    with pytest.raises(ConfigError, match="'method.student_init': no student block has the shapes"):
        Trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists(), "a refused config leaves no run directory"
    with pytest.raises(ValueError, match="the student has 3 sections, the teacher 4"):
        teacher_block_map(build_model("resnet", 8, num_classes=10, in_channels=3),
                          build_model("torchvision_vit", 4, num_classes=10, in_channels=3, image_size=8, patch_size=4,
                                      hidden_dim=8, mlp_dim=8, num_heads=2), "spaced")
