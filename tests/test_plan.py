"""The experiment plan (`lit.plan`): run ids, override precedence, what each method reads,
every shipped config, and the run ids `lit plan` prints against the pipeline's own."""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import pytest
import yaml

from lit.cli import main
from lit.config import ConfigError
from lit.engine.runconfig import config_hash, load_run_config, run_config_from_dict
from lit.plan import plan_experiments
from workflow_helpers import ROOT, make_project, snakemake, tiny_config

CONFIGS = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))
STUDENT = "config/runs/digits-student.yaml"
GAN = "config/runs/colordigits-gan.yaml"
TEACHER_DIR = "results/runs/tiny/teacher-resnet14-s0-0123456789"


def phase(epochs: int, lr: float, milestones: list[int]) -> dict:
    return {"epochs": epochs, "iterations": None, "optimizer": "sgd", "lr": lr, "group_lr": {}, "momentum": 0.9,
            "nesterov": False, "betas": [0.9, 0.999], "weight_decay": 0.0001, "schedule": "multistep",
            "milestones": milestones, "gamma": 0.1, "decay_start": None, "warmup_iters": 0, "warmup_lr": 0.01}


# A LIT ResNet-8 student on digits with every key spelled out, so that a changed default
# does not change it: only a change of the hash itself (or of what enters it) does.
GOLDEN_CONFIG = {
    "seed": 0,
    "data": {"name": "digits", "root": "data", "download": False, "val_fraction": 0.1, "split_seed": 0, "options": {}},
    "model": {"family": "resnet", "depth": 8, "options": {}},
    "method": {"name": "lit", "teacher": TEACHER_DIR, "hard_weight": 0.95, "temperature": 6.0, "kd_weight": 0.75,
               "kd_weight_schedule": "constant", "copy_stem_head": True, "freeze_stem_head": True,
               "finetune_freeze_stem_head": True, "hint_section": None, "tuned": None, "n_critic": 5, "lambda_gp": 10.0,
               "lambda_cls": 1.0, "lambda_rec": 10.0, "d_conv_dim": 64, "d_repeat_num": None},
    "train": {"batch_size": 64, "eval_batch_size": 512, "lr_reference_batch": None, "device": "auto", "precision": "auto",
              "channels_last": True, "compile": False, "threads": None, "progress": "auto", "log_every": 100,
              "checkpoint_every": 1000,
              "phases": {"train": phase(12, 0.05, [8]), "lit": phase(7, 0.05, [5]), "finetune": phase(5, 0.005, [3]),
                         "hint": phase(4, 0.05, [])}},
    "evaluate": {"fid_images": None, "fid_batch_size": 50, "fid_weights": "torchscript"},
}
# Changing this value means EVERY run id of every experiment changes: no finished run is
# found again and the whole pipeline retrains. Change it only on purpose.
GOLDEN_HASH = "6bd7c51088"


def test_config_hash_is_pinned():
    assert config_hash(run_config_from_dict(copy.deepcopy(GOLDEN_CONFIG))) == GOLDEN_HASH


def test_unhashed_keys_leave_the_hash():
    """Where data live, progress bars and how often the state is saved change no result."""
    values = copy.deepcopy(GOLDEN_CONFIG)
    values["data"].update(root="elsewhere", download=True)
    values["train"].update(progress="off", checkpoint_every=7)
    assert config_hash(run_config_from_dict(values)) == GOLDEN_HASH


# method, its base config, keys it does not read, keys it reads
READS = {
    "scratch": (STUDENT, ["method.temperature=2.0", "method.kd_weight=0.5", "train.phases.lit.lr=0.2"],
                ["train.phases.train.lr=0.2", "train.batch_size=32", "data.val_fraction=0.2"]),
    "kd": (STUDENT, ["method.kd_weight=0.5", "method.hint_section=0", "train.phases.lit.lr=0.2", "train.phases.hint.epochs=1"],
           ["method.temperature=2.0", "method.hard_weight=0.5", "train.phases.train.lr=0.2", "method.teacher=other"]),
    "lit": (STUDENT, ["method.hint_section=0", "method.lambda_rec=1.0", "train.phases.train.lr=0.2"],
            ["method.kd_weight=0.5", "method.temperature=2.0", "method.copy_stem_head=false", "train.phases.finetune.lr=0.2"]),
    "fitnets": (STUDENT, ["method.kd_weight=0.5", "method.kd_weight_schedule=linear", "train.phases.lit.lr=0.2"],
                ["method.hint_section=0", "method.temperature=2.0", "train.phases.hint.lr=0.2", "train.phases.train.lr=0.2"]),
    "gan_lit": (GAN, ["method.temperature=2.0", "method.kd_weight=0.5", "train.phases.gan.lr=0.001"],
                ["method.lambda_rec=1.0", "method.d_conv_dim=8", "train.phases.lit.iterations=5", "model.depth=3"]),
    "stargan": (GAN, ["method.temperature=2.0", "train.phases.lit.iterations=5"],
                ["method.lambda_gp=1.0", "train.phases.gan.iterations=5", "model.options.conv_dim=8"]),
}


@pytest.mark.parametrize("method", sorted(READS))
def test_hash_changes_with_what_a_method_reads_only(method):
    base, unread, read = READS[method]
    fixed = [f"method.name={method}", f"method.teacher={TEACHER_DIR}"] if method not in ("scratch", "stargan") \
        else [f"method.name={method}"]
    reference = config_hash(load_run_config(ROOT / base, fixed))
    for override in unread:
        assert config_hash(load_run_config(ROOT / base, [*fixed, override])) == reference, f"{method} never reads {override}"
    for override in read:
        assert config_hash(load_run_config(ROOT / base, [*fixed, override])) != reference, f"{method} reads {override}"


def plan_of(config: dict, **kwargs):
    return plan_experiments(config, workdir=ROOT, **kwargs)


def resolved(run):
    """The run config a run trains with: its base file and its command-line overrides."""
    return load_run_config(ROOT / run.base, run.overrides)


def test_override_precedence():
    """data_root < experiment overrides < teacher / students overrides < per_method <
    method, depth and seed of the sweep."""
    config = tiny_config(depths=(8, 14), seeds=(0, 1))
    config["data_root"] = "cache"
    exp = config["experiments"]["tiny"]
    exp["overrides"].update({"train.batch_size": 32, "train.eval_batch_size": 100, "seed": 7})
    exp["teacher"]["overrides"] = {**exp["teacher"]["overrides"], "train.batch_size": 40, "model.depth": 56}
    exp["students"]["overrides"].update({"train.batch_size": 48, "model.depth": 56, "method.name": "fitnets"})
    exp["students"]["per_method"] = {"lit": {"train.batch_size": 56, "method.kd_weight": 0.5, "seed": 9}}
    plan = plan_of(config)
    teacher = resolved(plan.experiment_teacher("tiny"))
    assert (teacher.data.root, teacher.train.batch_size, teacher.train.eval_batch_size) == ("cache", 40, 100)
    assert (teacher.model.depth, teacher.seed, teacher.method.name) == (14, 0, "scratch")
    for run in plan.runs[1:]:
        cfg = resolved(run)
        assert (cfg.method.name, cfg.model.depth, cfg.seed) == (run.method, run.depth, run.seed)
        assert cfg.train.eval_batch_size == 100 and cfg.data.root == "cache"
        assert cfg.train.batch_size == (56 if run.method == "lit" else 48)
        assert cfg.method.kd_weight == (0.5 if run.method == "lit" else 0.75)
    assert sorted((r.method, r.depth, r.seed) for r in plan.runs[1:]) == sorted(
        (m, d, s) for m in ("scratch", "kd", "lit") for d in (8, 14) for s in (0, 1))
    config["experiments"]["tiny"]["overrides"]["data.root"] = "mine"  # the experiment's own data.root wins
    assert resolved(plan_of(config).runs[0]).data.root == "mine"


def test_a_value_a_method_does_not_read_changes_neither_its_id_nor_its_command():
    before = plan_of(tiny_config())
    after = plan_of(tiny_config(student_overrides={"method.kd_weight": 0.5}))
    changed = {r.method for r in before.runs if r not in after.runs}
    assert changed == {"lit"}, "only LIT reads beta: the other runs keep their id and their command line"
    kd = next(r for r in before.runs if r.method == "kd")
    assert not [o for o in kd.overrides if o.startswith(("method.kd_weight", "train.phases.lit", "train.phases.finetune"))]
    assert f'method.teacher="{before.runs[0].run_dir}"' in kd.overrides


def test_a_config_rewritten_by_a_yaml_1_2_tool_plans_the_same_commands():
    """`dvc exp run -S` rewrites the config in YAML 1.2, where `off` is a plain word, which
    Snakemake's YAML 1.1 then reads as false: the runs, their commands and the tuning's
    must stay as they were, or every job would rerun."""
    def with_progress(value):
        config = tiny_config()
        config["experiments"]["tiny"]["overrides"]["train.progress"] = value
        config["experiments"]["tiny"]["tune"] = {"depth": 8, "grids": {"temperature": [2.0, 4.0]}}
        return config

    written, read_back = plan_of(with_progress("off")), plan_of(with_progress(False))
    assert read_back.runs == written.runs and read_back.tunings == written.tunings
    assert 'train.progress="off"' in written.runs[0].overrides
    assert 'train.progress="on"' in plan_of(with_progress(True)).runs[0].overrides
    assert yaml.safe_load("progress: off") == {"progress": False}  # what YAML 1.1 does with the word


def test_a_tuning_stage_reruns_only_the_runs_that_read_the_tuned_values():
    plain = plan_of(tiny_config())
    tuned_config = tiny_config()
    tuned_config["experiments"]["tiny"]["tune"] = {"depth": 8, "grids": {"temperature": [2.0, 4.0]}}
    tuned = plan_of(tuned_config)
    kept = {r.method for r in plain.runs if r in tuned.runs}
    assert kept == {"scratch"} and plain.runs[0] in tuned.runs, "the teacher and scratch keep their ids: not retrained"
    assert {r.method for r in tuned.runs if r.tuned} == {"kd", "lit"}


def test_default_config_plan():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    plan = plan_of(config)
    teacher, students = plan.runs[0], plan.runs[1:]
    assert len(plan.runs) == 19 and [r.role for r in plan.runs] == ["teacher"] + ["student"] * 18  # 3 x 3 x 2 seeds
    assert re.fullmatch(r"teacher-resnet32-s0-[0-9a-f]{10}", teacher.run_id) and teacher.method == "scratch"
    assert teacher.run_dir == f"results/runs/digits-resnet/{teacher.run_id}"
    tuning = plan.tunings["digits-resnet"]
    assert tuning.teacher == teacher.run_dir and re.fullmatch(r"results/runs/digits-resnet/tuning-[0-9a-f]{10}", tuning.out_dir)
    assert tuning.grid_args == "--temperatures 2.0 4.0 6.0 --hard-weights 0.5 0.95 --kd-weights 0.25 0.5 0.75"
    for run in students:
        assert re.fullmatch(rf"{run.method}-resnet{run.depth}-s{run.seed}-[0-9a-f]{{10}}", run.run_id)
        distilled = run.method in ("kd", "lit")
        assert run.teacher == (teacher.run_id if distilled else None)
        assert plan.teacher_of(run) == (teacher if distilled else None)
        assert run.tuned == (tuning.tuned if distilled else None)
        assert (f'method.tuned="{tuning.tuned}"' in run.overrides) == distilled
    assert len({r.run_id for r in plan.runs}) == 19
    assert plan.shallowest_student("digits-resnet").depth == 8
    targets = plan.all_targets()
    assert len(targets) == 2 + 19 + 8 + 2 and f"{teacher.run_dir}/eval.json" in targets
    assert "results/digits-resnet/digits-resnet-tuning.png" in targets
    assert plan_of(config, results="elsewhere").runs[0].run_dir.startswith("elsewhere/runs/digits-resnet/teacher-")


@pytest.mark.parametrize("config_file", CONFIGS)
def test_every_config_plans(config_file):
    config = yaml.safe_load((ROOT / "config" / config_file).read_text())
    plan = plan_of(config)
    for name, exp in config["experiments"].items():
        runs = plan.experiment_runs(name)
        students = exp["students"]
        depths = {m: students.get("depths_by_method", {}).get(m, students["depths"]) for m in students["methods"]}
        assert len(runs) == 1 + sum(len(d) for d in depths.values()) * len(students["seeds"])
        assert runs[0].role == "teacher" and runs[0].method == exp["teacher"].get("method", "scratch")
        for run in runs[1:]:
            teacher = plan.teacher_of(run)
            assert teacher is None or teacher == runs[0]
        if plan.experiment_kind(name) == "gan":
            assert re.fullmatch(r"teacher-stargan6-s0-[0-9a-f]{10}", runs[0].run_id)
            assert all(re.fullmatch(rf"gan_lit-stargan{r.depth}-s{r.seed}-[0-9a-f]{{10}}", r.run_id) for r in runs[1:])
            assert all(r.teacher == runs[0].run_id for r in runs[1:])
    assert len({(r.experiment, r.run_id) for r in plan.runs}) == len(plan.runs)


def test_gan_students_read_their_own_overrides():
    config = yaml.safe_load((ROOT / "config" / "gan-small.yaml").read_text())
    plan = plan_of(config)
    teacher, student = plan.runs[0], plan.runs[1]
    assert resolved(student).train.phases["lit"].iterations == 500
    assert not [o for o in teacher.overrides if o.startswith("train.phases.lit")]
    config["experiments"]["colordigits-stargan"]["students"]["overrides"]["train.phases.lit.iterations"] = 400
    again = plan_of(config)
    assert again.runs[0] == teacher and again.runs[1].run_id != student.run_id


@pytest.mark.parametrize("where, edit, message", [
    ("students", lambda e: e["students"]["per_method"].update({"lit": {"train.phases.lit.lrr": 0.1}}),
     "experiments.tiny.students (lit, depth 8, seed 0): unknown config key 'train.phases.lit.lrr'"),
    ("teacher", lambda e: e["teacher"]["overrides"].update({"train.batch_sise": 2}),
     "experiments.tiny.teacher: unknown config key 'train.batch_sise'"),
    ("experiment", lambda e: e["overrides"].update({"method.kd_weight": 2.0}),
     "experiments.tiny.teacher: config key 'method.kd_weight': expected a number in [0, 1]"),
    ("tune", lambda e: e.update({"tune": {"depth": 8, "overrides": {"train.phases.lit.epochs": "two"}}}),
     "experiments.tiny.tune: config key 'train.phases.lit.epochs'"),
    ("method", lambda e: e["students"].update({"methods": ["scratch", "lit2"]}),
     "experiments.tiny.students.methods (lit2): expected one of"),
    ("teacher method", lambda e: e["teacher"].update({"method": "kd"}),
     "experiments.tiny.teacher: config key 'method.teacher' is required by method 'kd'"),
])
def test_a_bad_experiment_key_is_named(where, edit, message):
    config = copy.deepcopy(tiny_config())  # the edits must not reach the helpers' shared overrides
    config["experiments"]["tiny"]["students"]["per_method"] = {}
    edit(config["experiments"]["tiny"])
    with pytest.raises(ConfigError) as err:
        plan_of(config)
    assert str(err.value).startswith(message), str(err.value)


def test_lit_plan_prints_a_table_and_json(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["plan", "config/gan-small.yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["experiment", "role", "method", "depth", "seed", "run_id", "teacher", "tuned"]
    assert len(lines) == 1 + 5 and lines[1].split()[:5] == ["colordigits-stargan", "teacher", "stargan", "6", "0"]
    assert main(["plan", "config/gan-small.yaml", "--format", "json", "--results", "out"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert set(runs[1]) >= {"experiment", "run_id", "role", "method", "depth", "seed", "base", "overrides", "teacher",
                            "tuned", "run_dir"}
    assert runs[1]["base"] == GAN and runs[1]["run_dir"].startswith("out/runs/colordigits-stargan/gan_lit-stargan2-s0-")
    assert main(["plan", "config/nothing-here.yaml"]) == 2


@pytest.mark.slow
def test_lit_plan_names_the_runs_the_pipeline_trains(tmp_path, capsys, monkeypatch):
    """One dry run of the embedded default proves the Snakefile side of the plan: the
    pipeline trains exactly the runs `lit plan` lists, and evaluates each."""
    make_project(tmp_path, {"experiments": {}})
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "config/config.yaml", "--format", "json"]) == 0
    planned = {run["run_dir"] for run in json.loads(capsys.readouterr().out)["runs"]}
    output = snakemake(tmp_path, "--dry-run").stdout
    trained = set(re.findall(r"(results/runs/[^/\s]+/[^/\s]+)/summary\.json", output))
    evaluated = set(re.findall(r"(results/runs/[^/\s]+/[^/\s]+)/eval\.json", output))
    assert len(planned) == 19 and trained == planned and evaluated == planned
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", output, re.MULTILINE))
    assert counts["train"] == "19" and counts["evaluate"] == "19" and counts["prepare_data"] == "1", counts
    assert counts["tune"] == "1" and counts["report_experiment"] == "1", counts
    # the critical path first: the teacher, its tuning, then the students learning from it
    # (jobs Snakemake may start in any order otherwise: it started every scratch student first)
    priorities = {}
    for job in re.split(r"\n(?=(?:local)?rule )", output):
        rule = re.match(r"(?:local)?rule (\w+):", job)
        run = re.search(r"wildcards: exp=[^,\s]+, (?:run|tuning)=(\w+)-", job)
        if rule and run and rule[1] in ("train", "tune"):
            priority = re.search(r"^\s+priority: (\d+)$", job, re.MULTILINE)
            priorities.setdefault(run[1], set()).add(int(priority[1]) if priority else 0)
    assert priorities == {"teacher": {3}, "tuning": {2}, "kd": {1}, "lit": {1}, "scratch": {0}}, priorities


def set_revision(monkeypatch, catalogue, name: str, revision: int) -> None:
    """The catalogue as it would read after raising (or lowering) `name`'s revision."""
    monkeypatch.setitem(catalogue._entries, name, dataclasses.replace(catalogue.get(name), revision=revision))


def test_a_raised_code_revision_changes_the_run_ids_of_its_runs_only(monkeypatch):
    """Revision 1 leaves ids as they were (the golden hash); raising a family's revision
    (its code computes something else for the same config) gives its runs new ids."""
    from lit.catalog import MODELS

    cfg = run_config_from_dict(copy.deepcopy(GOLDEN_CONFIG))
    assert MODELS.revision(cfg.model.family) == 1 and config_hash(cfg) == GOLDEN_HASH
    set_revision(monkeypatch, MODELS, cfg.model.family, 2)
    assert config_hash(cfg) != GOLDEN_HASH
    assert MODELS.revision("vdcnn") == 2  # the official embedding, stem and init


def test_text_runs_carry_the_raised_revisions_of_vdcnn_and_the_text_data(monkeypatch):
    """Runs made before the official alphabet and VDCNN layers are not found again."""
    from lit.catalog import DATASETS, MODELS

    cfg = load_run_config(ROOT / "config" / "runs" / "text-teacher.yaml")
    assert DATASETS.revision(cfg.data.name) == 2 and MODELS.revision(cfg.model.family) == 2
    current = config_hash(cfg)
    set_revision(monkeypatch, DATASETS, cfg.data.name, 1)
    set_revision(monkeypatch, MODELS, cfg.model.family, 1)
    assert config_hash(cfg) != current
