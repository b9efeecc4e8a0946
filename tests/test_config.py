"""Run configs: every error names the dotted key; overrides read as YAML; a round trip
through config.yaml gives the same config (resume compares them)."""

from __future__ import annotations

import pytest
import yaml

from lit.config import ConfigError, apply_override, dump_config
from lit.engine.runconfig import load_run_config, run_config_from_dict

TEACHER = "method.teacher=runs/teacher"


def config_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_run_config(None, list(overrides))
    return str(caught.value)


# ---------------------------------------------------------------- unknown keys


def test_unknown_key_names_the_dotted_key_and_the_known_keys():
    message = config_error("model.dept=8")
    assert "'model.dept'" in message
    assert all(known in message for known in ("family", "depth", "options"))


def test_unknown_top_level_key_and_unknown_phase_are_named():
    message = config_error("sed=1")
    assert "'sed'" in message and "seed" in message and "train" in message
    message = config_error("train.phases.lti.epochs=3")
    assert "'train.phases.lti'" in message and "lit" in message and "finetune" in message


def test_unknown_key_in_a_yaml_file_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  phases:\n    train: {epochs: 2, learning_rate: 0.1}\n")
    with pytest.raises(ConfigError, match=r"'train\.phases\.train\.learning_rate'.*known keys.*\blr\b"):
        load_run_config(path)


# ---------------------------------------------------------------- wrong types and ranges


@pytest.mark.parametrize(
    "override, key, value, expected",
    [
        ("model.depth=abc", "model.depth", "'abc'", "int"),
        ("model.depth=8.5", "model.depth", "8.5", "int"),
        ("train.batch_size=true", "train.batch_size", "True", "int"),
        ("method.temperature=hot", "method.temperature", "'hot'", "float"),
        ("train.precision=fp16", "train.precision", "'fp16'", "'bf16'"),
        ("train.phases.train.milestones=5", "train.phases.train.milestones", "5", "list"),
        ("train.phases.train.milestones=[2, x]", "train.phases.train.milestones[1]", "'x'", "int"),
        ("data.download=maybe", "data.download", "'maybe'", "bool"),
    ],
)
def test_wrong_type_names_the_key_the_value_and_the_expected_type(override, key, value, expected):
    message = config_error(override)
    assert f"'{key}'" in message and value in message and expected in message


@pytest.mark.parametrize(
    "override, key, value",
    [
        ("method.hard_weight=1.5", "method.hard_weight", "1.5"),
        ("method.hard_weight=-0.1", "method.hard_weight", "-0.1"),
        ("method.kd_weight=2", "method.kd_weight", "2"),
        ("method.temperature=0", "method.temperature", "0"),
        ("data.val_fraction=1", "data.val_fraction", "1"),
        ("model.depth=0", "model.depth", "0"),
        ("train.batch_size=0", "train.batch_size", "0"),
        ("train.phases.train={epochs: 2, lr: 0}", "train.phases.train.lr", "0"),
        ("train.phases.train={epochs: -1}", "train.phases.train.epochs", "-1"),
        ("train.phases.train={epochs: 2, milestones: [3]}", "train.phases.train.milestones", "[3]"),
        ("method.name=distil", "method.name", "'distil'"),
        ("model.family=vgg", "model.family", "'vgg'"),
    ],
)
def test_out_of_range_values_name_the_key(override, key, value):
    message = config_error(override, "train.phases.train.epochs=1") if "phases" not in override else config_error(override)
    assert key in message and value in message


def test_in_range_edges_are_accepted():
    cfg = load_run_config(None, ["method.hard_weight=1", "method.kd_weight=0", "data.val_fraction=0.5", "train.phases.train.epochs=1"])
    assert (cfg.method.hard_weight, cfg.method.kd_weight, cfg.data.val_fraction) == (1.0, 0.0, 0.5)
    assert isinstance(cfg.method.hard_weight, float)


# ---------------------------------------------------------------- method requirements


def test_lit_without_its_finetune_phase_names_it():
    message = config_error("method.name=lit", TEACHER, "train.phases.lit.epochs=2")
    assert "train.phases.finetune" in message and "lit" in message


def test_kd_without_a_teacher_names_method_teacher():
    for method in ("kd", "lit"):
        phases = ["train.phases.train.epochs=1"] if method == "kd" else ["train.phases.lit.epochs=1", "train.phases.finetune.epochs=1"]
        assert "method.teacher" in config_error(f"method.name={method}", *phases)


def test_scratch_needs_its_train_phase_only():
    assert "train.phases.train" in config_error("method.name=scratch")
    cfg = load_run_config(None, ["train.phases.train.epochs=3"])
    assert cfg.method.teacher is None and list(cfg.train.phases) == ["train"]


# ---------------------------------------------------------------- overrides


def test_overrides_reach_nested_phase_keys_and_keep_the_other_defaults():
    cfg = load_run_config(None, ["method.name=lit", TEACHER, "train.phases.lit.lr=0.01",
                             "train.phases.lit.epochs=3", "train.phases.finetune.epochs=2"])
    assert cfg.train.phases["lit"].lr == 0.01 and cfg.train.phases["lit"].epochs == 3
    assert cfg.train.phases["lit"].momentum == 0.9  # the default of the phase
    assert cfg.train.phases["finetune"].lr == 0.1
    assert cfg.method.teacher == "runs/teacher"


def test_overrides_override_the_yaml_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {depth: 56}\ntrain:\n  phases:\n    train: {epochs: 15, lr: 0.02}\n")
    cfg = load_run_config(path, ["model.depth=8", "train.phases.train.lr=0.5"])
    assert cfg.model.depth == 8 and cfg.model.family == "resnet"
    assert cfg.train.phases["train"].lr == 0.5 and cfg.train.phases["train"].epochs == 15


def test_overrides_read_lists_mappings_scientific_floats_and_nulls():
    cfg = load_run_config(None, [
        "train.phases.train.milestones=[2, 4]", "train.phases.train.weight_decay=1e-4", "train.phases.train.lr=5E-2",
        "model.options={widths: [8, 16, 32]}", "train.threads=null", "train.progress=off", "data.download=true",
    ])
    phase = cfg.train.phases["train"]
    assert phase.milestones == [2, 4]
    assert isinstance(phase.weight_decay, float) and phase.weight_decay == pytest.approx(1e-4)
    assert isinstance(phase.lr, float) and phase.lr == pytest.approx(0.05)
    assert cfg.model.options == {"widths": [8, 16, 32]}
    assert cfg.train.threads is None and cfg.train.progress == "off" and cfg.data.download is True


def test_progress_on_and_off_read_as_yaml_booleans_still_mean_on_and_off(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  progress: on\n  phases: {train: {epochs: 1}}\n")
    assert load_run_config(path).train.progress == "on"
    assert load_run_config(path, ["train.progress=off"]).train.progress == "off"


@pytest.mark.parametrize("override", ["model.depth", "=8", "model..depth=8", ".depth=8", "model.depth.=8"])
def test_bad_override_syntax_is_refused(override):
    with pytest.raises(ConfigError, match="override"):
        load_run_config(None, [override])


def test_an_override_below_a_value_that_is_not_a_mapping_is_refused():
    with pytest.raises(ConfigError, match="'seed' is not a mapping"):
        load_run_config(None, ["seed=1", "seed.x=1"])


def test_apply_override_keeps_the_rest_of_the_text_after_the_first_equals_sign():
    values: dict = {}
    apply_override(values, "method.teacher=runs/a=b")
    assert values == {"method": {"teacher": "runs/a=b"}}


# ---------------------------------------------------------------- files and round trip


def test_missing_or_non_mapping_config_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_run_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("model: {depth: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(tmp_path / "bad.yaml")


def test_dumped_config_reads_back_identical():
    cfg = load_run_config(None, [
        "method.name=lit", TEACHER, "train.phases.lit={epochs: 3, lr: 1e-4, milestones: [1, 2], weight_decay: 5e-4}",
        "train.phases.finetune={epochs: 1, lr: 1e30}", "model.options={widths: [8, 16, 32]}", "train.threads=1",
    ])
    again = run_config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again == cfg and again.to_dict() == cfg.to_dict()


def test_the_repository_run_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "config" / "runs"
    teacher = load_run_config(root / "digits-teacher.yaml")
    assert (teacher.model.depth, teacher.method.name) == (56, "scratch")
    for method in ("scratch", "kd", "lit"):
        student = load_run_config(root / "digits-student.yaml", [f"method.name={method}", TEACHER])
        assert student.model.depth == 8 and student.method.hard_weight == 0.95
