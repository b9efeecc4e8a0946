# The plan of the sweep: every run the config asks for, with its content-hashed id.
import hashlib
import json
import os
import sys
from pathlib import Path
import shlex
from dataclasses import dataclass

from snakemake.exceptions import WorkflowError

from lit.cli import load_gan_settings
from lit.config import ConfigError, config_hash, load_config
from lit.methods import METHODS


envvars:
    "PATH",


# rules call the `lit` command installed beside the Python that runs snakemake, also when
# its environment is not activated (`.venv/bin/snakemake ...`)
os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
)

RESULTS = config.get("results", "results")
DATA_ROOT = config.get("data_root", "data")


wildcard_constraints:
    exp="[^/]+",
    run="[^/]+",


@dataclass(frozen=True)
class Run:
    exp: str
    run_id: str
    base: str  # the run config file the overrides apply to
    overrides: tuple[str, ...]
    teacher: str | None  # run id of the teacher in the same experiment
    role: str
    depth: int = 0
    kind: str = "classifier"  # or "gan"
    tuned: str | None = None  # the tuned.json whose tau, alpha, beta this run uses

    @property
    def run_dir(self):
        return f"{RESULTS}/runs/{self.exp}/{self.run_id}"

    @property
    def args(self):
        return " ".join(shlex.quote(o) for o in self.overrides)


def as_overrides(values):
    # JSON is YAML, so every value reads back exactly as it was written here
    return tuple(f"{key}={json.dumps(value)}" for key, value in values.items())


def resolve(exp, where, base, values):
    try:
        cfg = load_config(base, as_overrides(values))
    except ConfigError as err:
        raise WorkflowError(f"experiments.{exp}.{where}: {err}") from None
    return cfg, config_hash(cfg)


def read_by(method, values):
    """The overrides a method reads: the others (beta for KD, say) must not rerun it."""
    spec = METHODS.get(method)

    def read(key):
        parts = key.split(".")
        if parts[0] == "method" and len(parts) > 1:
            return parts[1] == "name" or parts[1] in spec.uses
        if parts[:2] == ["train", "phases"] and len(parts) > 2:
            return parts[2] in spec.phases
        return True

    return {key: value for key, value in values.items() if read(key)}


def plan_teacher(name, exp, common):
    teacher = exp["teacher"]
    values = {**common, **teacher.get("overrides", {}), "method.name": "scratch"}
    values.update({"model.depth": teacher["depth"], "seed": teacher.get("seed", 0)})
    cfg, digest = resolve(name, "teacher", teacher["config"], values)
    run_id = f"teacher-{cfg.model.family}{cfg.model.depth}-s{cfg.seed}-{digest}"
    return Run(name, run_id, teacher["config"], as_overrides(values), None, "teacher")


@dataclass(frozen=True)
class Tuning:
    """The experiment's validation tuning of tau, alpha and beta (`lit tune`)."""

    exp: str
    out_dir: str
    base: str
    overrides: tuple[str, ...]
    teacher: str
    grids: dict

    @property
    def tuned(self):
        return f"{self.out_dir}/tuned.json"

    @property
    def args(self):
        return " ".join(shlex.quote(o) for o in self.overrides)

    @property
    def grid_args(self):
        flags = {
            "temperature": "--temperatures",
            "hard_weight": "--hard-weights",
            "kd_weight": "--kd-weights",
        }
        return " ".join(
            f"{flags[key]} {' '.join(str(v) for v in values)}"
            for key, values in self.grids.items()
            if values
        )


def plan_tuning(name, exp, common, teacher):
    """A short sweep with a small student, scored on the validation split only."""
    spec = exp["tune"]
    values = {
        **common,
        **exp["students"].get("overrides", {}),
        **spec.get("overrides", {}),
    }
    values.update({"model.depth": spec["depth"], "seed": spec.get("seed", 0)})
    values.update({"method.name": "lit", "method.teacher": teacher.run_dir})
    cfg, digest = resolve(name, "tune", exp["students"]["config"], values)
    grids = {
        key: spec.get("grids", {}).get(key, [])
        for key in ("temperature", "hard_weight", "kd_weight")
    }
    text = json.dumps([digest, teacher.run_id, grids], sort_keys=True)
    out_dir = (
        f"{RESULTS}/runs/{name}/tuning-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    )
    return Tuning(
        name,
        out_dir,
        exp["students"]["config"],
        as_overrides(values),
        teacher.run_dir,
        grids,
    )


def plan_student(name, exp, common, teacher, method, depth, seed, tuning=None):
    students = exp["students"]
    values = {**common, **students.get("overrides", {})}
    values.update(students.get("per_method", {}).get(method, {}))
    values.update({"method.name": method, "model.depth": depth, "seed": seed})
    needs_teacher = method in METHODS and METHODS.get(method).needs_teacher
    if needs_teacher:
        values["method.teacher"] = teacher.run_dir
    tuned = tuning.tuned if tuning and "tuned" in METHODS.get(method).uses else None
    if tuned:
        values["method.tuned"] = tuned
    where = f"students ({method}, depth {depth}, seed {seed})"
    cfg, digest = resolve(name, where, students["config"], values)
    run_id = f"{method}-{cfg.model.family}{depth}-s{seed}-{digest}"
    overrides = as_overrides(read_by(method, values))
    teacher_id = teacher.run_id if needs_teacher else None
    return Run(
        name, run_id, students["config"], overrides, teacher_id, "student", tuned=tuned
    )


def plan_experiment(name, exp):
    common = {"data.root": DATA_ROOT, **exp.get("overrides", {})}
    teacher = plan_teacher(name, exp, common)
    if "tune" in exp:
        TUNINGS[name] = plan_tuning(name, exp, common, teacher)
    sweep = exp["students"]
    return [teacher] + [
        plan_student(name, exp, common, teacher, method, depth, seed, TUNINGS.get(name))
        for method in sweep["methods"]
        for depth in sweep["depths"]
        for seed in sweep["seeds"]
    ]


def gan_settings_hash(exp, where, base, values, extra=()):
    try:
        settings = load_gan_settings(Path(base), list(as_overrides(values)))
    except ConfigError as err:
        raise WorkflowError(f"experiments.{exp}.{where}: {err}") from None
    content = settings.to_dict()
    for unused in ("data_root", "download"):  # where data lives changes no result
        content.pop(unused)
    text = json.dumps([content, *extra], sort_keys=True)
    return settings, hashlib.sha256(text.encode()).hexdigest()[:10]


def plan_gan_experiment(name, exp):
    """A StarGAN teacher and LIT-distilled student generators (depth = residual blocks)."""
    common = {"data_root": DATA_ROOT, **exp.get("overrides", {})}
    teacher = exp["teacher"]
    values = {**common, **teacher.get("overrides", {})}
    values.update({"depth": teacher["depth"], "seed": teacher.get("seed", 0)})
    base = teacher["config"]
    _, digest = gan_settings_hash(name, "teacher", base, values)
    teacher_id = f"gan-teacher-stargan{teacher['depth']}-s{values['seed']}-{digest}"
    runs = [
        Run(
            name,
            teacher_id,
            base,
            as_overrides(values),
            None,
            "teacher",
            teacher["depth"],
            "gan",
        )
    ]
    students = exp["students"]
    for method in students["methods"]:
        if method != "lit":
            raise WorkflowError(
                f"experiments.{name}.students.methods: GAN experiments distil with 'lit' only, got {method!r}"
            )
        for depth in students["depths"]:
            for seed in students["seeds"]:
                values = {**common, **students.get("overrides", {}), "seed": seed}
                where = f"students (depth {depth}, seed {seed})"
                _, digest = gan_settings_hash(
                    name, where, students["config"], values, (teacher_id, depth)
                )
                run_id = f"gan-lit-stargan{depth}-s{seed}-{digest}"
                runs.append(
                    Run(
                        name,
                        run_id,
                        students["config"],
                        as_overrides(values),
                        teacher_id,
                        "student",
                        depth,
                        "gan",
                    )
                )
    return runs


TUNINGS = {}  # experiment -> Tuning, for experiments with a `tune` block


def experiment_kind(exp):
    return config["experiments"][exp].get("kind", "classifier")


RUNS = {
    (run.exp, run.run_id): run
    for name, exp in config["experiments"].items()
    for run in (plan_gan_experiment if exp.get("kind") == "gan" else plan_experiment)(
        name, exp
    )
}


def run_of(wildcards):
    return RUNS[(wildcards.exp, wildcards.run)]


def shallowest_student(exp):
    """The run whose sample grid the GAN report shows beside the teacher's."""
    students = [
        r for (name, _), r in RUNS.items() if name == exp and r.role == "student"
    ]
    return min(students, key=lambda r: (r.depth, r.run_id))


def experiment_evals(exp):
    return [
        f"{run.run_dir}/eval.json" for (name, _), run in RUNS.items() if name == exp
    ]


def teacher_run_id(exp):
    return next(
        run.run_id
        for (name, _), run in RUNS.items()
        if name == exp and run.role == "teacher"
    )


REPORT_KINDS = {
    "classifier": [
        "depth-vs-accuracy.png",
        "depth-vs-accuracy.pdf",
        "summary.csv",
        "summary.md",
        "compression.csv",
        "compression.md",
    ],
    "gan": [
        "depth-vs-fid.png",
        "depth-vs-fid.pdf",
        "fid.csv",
        "fid.md",
        "samples-teacher.png",
        "samples-student.png",
    ],
}


def all_targets():
    """The tables, figures and reports, and every run's eval.json: the runs are never in
    git (DVC keeps them), so a fresh clone whose committed reference tables look up to
    date still trains and evaluates every run, and its tables are then made anew."""
    targets = [f"{RESULTS}/table.csv", f"{RESULTS}/metrics.json"]
    for exp in config["experiments"]:
        targets += experiment_evals(exp)
        targets += [
            f"{RESULTS}/{exp}/{exp}-{kind}"
            for kind in REPORT_KINDS[experiment_kind(exp)]
        ]
        if exp in TUNINGS:
            targets += [
                f"{RESULTS}/{exp}/{exp}-tuning.{kind}" for kind in ("csv", "png")
            ]
    return targets
