"""The experiment plan: from a pipeline config (`config/*.yaml`) to the list of runs.

An experiment names a teacher and a sweep of students (methods x depths x seeds); every
one of them, classifier or generator, is an ordinary run config: a base file plus dotted
`key=value` overrides, taken in this order, later ones winning:

    data.root (the config's `data_root`) < the experiment's `overrides`
    < the teacher's or the students' `overrides` < `per_method[method]`
    < method.name, model.depth, seed (and method.teacher, method.tuned where used)

The students' `depths_by_method` gives a method its own depths in place of `depths`, e.g.
`{slimming: [20]}`: network slimming narrows a network instead of making it shallower, so
it trains at the depth it is slimmed from.

A run's id is `<method>-<family><depth>-s<seed>-<hash>` (`teacher-...` for the teacher),
the hash being `lit.engine.runconfig.config_hash` of the resolved config, which covers
only what the method reads. The overrides a method does not read are also left out of
the run's command line, so that changing one (beta for KD, say) changes neither the id
nor the command of that run, and Snakemake does not run it again. The workflow
(`workflow/rules/common.smk`) and `lit plan` both read this plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lit.catalog import METHODS
from lit.config import ConfigError, read_yaml_mapping
from lit.engine.runconfig import config_hash, load_run_config

TEACHER, STUDENT = "teacher", "student"
TUNED_GRIDS = ("temperature", "hard_weight", "kd_weight")  # `lit tune`'s grids, in its order
GRID_FLAGS = {"temperature": "--temperatures", "hard_weight": "--hard-weights", "kd_weight": "--kd-weights"}

# the per-experiment files the report rules write, by experiment kind
REPORT_FILES = {
    "classifier": ("depth-vs-accuracy.png", "depth-vs-accuracy.pdf", "summary.csv", "summary.md",
                   "compression.csv", "compression.md", "learning-curves.png", "speed.json"),
    "gan": ("depth-vs-fid.png", "depth-vs-fid.pdf", "fid.csv", "fid.md", "samples-teacher.png", "samples-student.png",
            "learning-curves.png"),
}


@dataclass(frozen=True)
class Run:
    """One training run of an experiment: `lit train {base} {args} --run-dir {run_dir}`."""

    experiment: str
    run_id: str
    role: str  # "teacher" or "student"
    method: str
    depth: int
    seed: int
    base: str  # the run config file the overrides apply to
    overrides: tuple[str, ...]  # `key=value`, each value JSON (so YAML) encoded
    teacher: str | None = None  # run id of its teacher in the same experiment
    tuned: str | None = None  # the tuned.json whose tau, alpha and beta the run uses
    results: str = "results"

    @property
    def run_dir(self) -> str:
        return f"{self.results}/runs/{self.experiment}/{self.run_id}"

    @property
    def args(self) -> str:
        return " ".join(shlex.quote(o) for o in self.overrides)


@dataclass(frozen=True)
class Tuning:
    """An experiment's validation tuning of tau, alpha and beta (`lit tune`) before its sweep."""

    experiment: str
    out_dir: str
    base: str
    overrides: tuple[str, ...]
    teacher: str  # the teacher's run directory
    grids: dict[str, list[float]]

    @property
    def tuned(self) -> str:
        return f"{self.out_dir}/tuned.json"

    @property
    def args(self) -> str:
        return " ".join(shlex.quote(o) for o in self.overrides)

    @property
    def grid_args(self) -> str:
        return " ".join(
            f"{GRID_FLAGS[key]} {' '.join(str(v) for v in values)}" for key, values in self.grids.items() if values
        )


@dataclass(frozen=True)
class Plan:
    """Every run and tuning of a pipeline config, with the lookups the workflow needs."""

    experiments: dict[str, dict[str, Any]]  # the config's `experiments` block
    runs: tuple[Run, ...]
    tunings: dict[str, Tuning]  # experiment -> its tuning, for experiments with a `tune` block
    results: str = "results"

    def run(self, experiment: str, run_id: str) -> Run:
        for run in self.runs:
            if run.experiment == experiment and run.run_id == run_id:
                return run
        raise KeyError(f"no run {run_id!r} in experiment {experiment!r}")

    def experiment_runs(self, experiment: str) -> list[Run]:
        return [run for run in self.runs if run.experiment == experiment]

    def experiment_teacher(self, experiment: str) -> Run:
        return next(run for run in self.experiment_runs(experiment) if run.role == TEACHER)

    def data_args(self, experiment: str) -> str:
        """`lit prepare-data`'s overrides for an experiment: the teacher's `data.*` ones, all
        that it reads. Its other values (epochs, depth, ...) are left out so that a change of
        them does not rerun the data job: Snakemake (9.27) reruns a job whose params changed
        and whose output the next jobs read as `ancient`, and then stops; the runs that
        change only train in a second invocation."""
        teacher = self.experiment_teacher(experiment)
        return " ".join(shlex.quote(o) for o in teacher.overrides if o.split("=", 1)[0].startswith("data."))

    def teacher_of(self, run: Run) -> Run | None:
        return self.run(run.experiment, run.teacher) if run.teacher else None

    def shallowest_student(self, experiment: str) -> Run:
        """The student whose sample grid the GAN report shows beside the teacher's."""
        students = [run for run in self.experiment_runs(experiment) if run.role == STUDENT]
        return min(students, key=lambda run: (run.depth, run.run_id))

    def experiment_kind(self, experiment: str) -> str:
        return self.experiments[experiment].get("kind", "classifier")

    def experiments_of_kind(self, kind: str) -> list[str]:
        return [name for name in self.experiments if self.experiment_kind(name) == kind]

    def evaluations(self, experiment: str | None = None) -> list[str]:
        """The eval.json of every run (of one experiment, or of all)."""
        runs = self.runs if experiment is None else self.experiment_runs(experiment)
        return [f"{run.run_dir}/eval.json" for run in runs]

    def all_targets(self) -> list[str]:
        """The tables, figures and reports, and every run's eval.json: the runs are never in
        git (DVC keeps them), so a fresh clone whose committed reference tables look up to
        date still trains and evaluates every run, and its tables are then made anew."""
        targets = [f"{self.results}/table.csv", f"{self.results}/metrics.json"]
        for name in self.experiments:
            targets += self.evaluations(name)
            targets += [f"{self.results}/{name}/{name}-{file}" for file in REPORT_FILES[self.experiment_kind(name)]]
            if name in self.tunings:
                targets += [f"{self.results}/{name}/{name}-tuning.{ext}" for ext in ("csv", "png")]
        return targets


# ---------------------------------------------------------------- planning


def as_overrides(values: dict[str, Any]) -> tuple[str, ...]:
    # JSON is YAML, so every value reads back exactly as it was written here
    return tuple(f"{key}={json.dumps(value)}" for key, value in values.items())


def as_words(values: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """`values` with the booleans the config reads as words (`train.progress: off`) put back
    as those words. YAML 1.2 tools that rewrite a pipeline config (`dvc exp run -S`) write
    `off` unquoted, which Snakemake's YAML 1.1 reads as false: the commands and params of
    the jobs must not depend on which tool last wrote the file."""
    resolved = cfg.to_dict()

    def word(key: str, value: Any) -> Any:
        node: Any = resolved
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return value
            node = node[part]
        return node if isinstance(node, str) else value

    return {key: word(key, value) if isinstance(value, bool) else value for key, value in values.items()}


def read_by(method: str, values: dict[str, Any]) -> dict[str, Any]:
    """The overrides `method` reads: the others (beta for KD, say) must not rerun it."""
    spec = METHODS.get(method)

    def read(key: str) -> bool:
        parts = key.split(".")
        if parts[0] == "method" and len(parts) > 1:
            return parts[1] == "name" or parts[1] in spec.uses
        if parts[:2] == ["train", "phases"] and len(parts) > 2:
            return parts[2] in spec.phases
        return True

    return {key: value for key, value in values.items() if read(key)}


def resolve(experiment: str, where: str, base: str, values: dict[str, Any]) -> tuple[Any, str]:
    """The checked run config and its content hash; a bad key names where it came from."""
    try:
        cfg = load_run_config(base, as_overrides(values))
    except ConfigError as err:
        raise ConfigError(f"experiments.{experiment}.{where}: {err}") from None
    return cfg, config_hash(cfg)


def plan_run(experiment: str, where: str, role: str, base: str, values: dict[str, Any], results: str,
             teacher: str | None = None, tuned: str | None = None) -> Run:
    cfg, digest = resolve(experiment, where, base, values)
    method = cfg.method.name
    prefix = TEACHER if role == TEACHER else method
    run_id = f"{prefix}-{cfg.model.family}{cfg.model.depth}-s{cfg.seed}-{digest}"
    return Run(experiment, run_id, role, method, cfg.model.depth, cfg.seed, base,
               as_overrides(read_by(method, as_words(values, cfg))), teacher, tuned, results)


def plan_tuning(name: str, exp: dict[str, Any], common: dict[str, Any], teacher: Run, results: str) -> Tuning:
    """A short sweep with a small student, scored on the validation split only."""
    spec, students = exp["tune"], exp["students"]
    values = {**common, **students.get("overrides", {}), **spec.get("overrides", {})}
    values.update({"model.depth": spec["depth"], "seed": spec.get("seed", 0)})
    values.update({"method.name": "lit", "method.teacher": teacher.run_dir})
    values.update({"train.selection": "val", "evaluate.test_every_epoch": False})  # as `lit tune` runs its trials
    cfg, digest = resolve(name, "tune", students["config"], values)
    values = as_words(values, cfg)
    grids = {key: spec.get("grids", {}).get(key, []) for key in TUNED_GRIDS}
    text = json.dumps([digest, teacher.run_id, grids], sort_keys=True)
    out_dir = f"{results}/runs/{name}/tuning-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    return Tuning(name, out_dir, students["config"], as_overrides(values), teacher.run_dir, grids)


def plan_experiment(name: str, exp: dict[str, Any], data_root: str, results: str) -> tuple[list[Run], Tuning | None]:
    for block, keys in (("teacher", ("config", "depth")), ("students", ("config", "methods", "depths", "seeds"))):
        missing = [key for key in keys if key not in exp.get(block, {})]
        if missing:
            raise ConfigError(f"experiments.{name}.{block}: missing key {missing[0]!r}")
    common = {"data.root": data_root, **exp.get("overrides", {})}
    block = exp["teacher"]
    values = {**common, **block.get("overrides", {}), "method.name": block.get("method", "scratch")}
    values.update({"model.depth": block["depth"], "seed": block.get("seed", 0)})
    teacher = plan_run(name, "teacher", TEACHER, block["config"], values, results)
    tuning = plan_tuning(name, exp, common, teacher, results) if "tune" in exp else None
    students = exp["students"]
    depths_by_method = check_depths_by_method(name, students)
    runs = [teacher]
    for method in students["methods"]:
        where = f"students.methods ({method})"
        if method not in METHODS:
            raise ConfigError(f"experiments.{name}.{where}: expected one of {', '.join(METHODS.names())}, got {method!r}")
        spec = METHODS.get(method)
        for depth in depths_by_method.get(method, students["depths"]):
            for seed in students["seeds"]:
                values = {**common, **students.get("overrides", {}), **students.get("per_method", {}).get(method, {})}
                values.update({"method.name": method, "model.depth": depth, "seed": seed})
                if spec.needs_teacher:
                    values["method.teacher"] = teacher.run_dir
                tuned = tuning.tuned if tuning and "tuned" in spec.uses else None
                if tuned:
                    values["method.tuned"] = tuned
                where = f"students ({method}, depth {depth}, seed {seed})"
                runs.append(plan_run(name, where, STUDENT, students["config"], values, results,
                                     teacher.run_id if spec.needs_teacher else None, tuned))
    return runs, tuning


def check_depths_by_method(name: str, students: dict[str, Any]) -> dict[str, list[int]]:
    """The students' `depths_by_method` (method -> depths, replacing `depths` for it), checked."""
    where = f"experiments.{name}.students.depths_by_method"
    by_method = students.get("depths_by_method", {})
    if not isinstance(by_method, dict):
        raise ConfigError(f"{where}: expected a mapping of methods to lists of depths, got {by_method!r}")
    for method, depths in by_method.items():
        if method not in students["methods"]:
            raise ConfigError(f"{where}: {method!r} is not one of the students' methods ({', '.join(students['methods'])})")
        if not isinstance(depths, list) or not depths or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in depths):
            raise ConfigError(f"{where}.{method}: expected a non-empty list of positive depths, got {depths!r}")
    return by_method


def plan_experiments(config: dict[str, Any], results: str | None = None, workdir: str | Path | None = None) -> Plan:
    """The plan of a pipeline config (the mapping Snakemake loads from `config/*.yaml`).
    Run config files are read relative to `workdir` (default: the current directory);
    `results` replaces the config's `results` folder. A bad key raises ConfigError whose
    message starts with `experiments.<experiment>.<where>:`."""
    results = results or config.get("results", "results")
    data_root = config.get("data_root", "data")
    runs: list[Run] = []
    tunings: dict[str, Tuning] = {}
    with working_directory(workdir):
        for name, exp in config.get("experiments", {}).items():
            planned, tuning = plan_experiment(name, exp, data_root, results)
            runs += planned
            if tuning:
                tunings[name] = tuning
    return Plan(dict(config.get("experiments", {})), tuple(runs), tunings, results)


@contextmanager
def working_directory(path: str | Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


# ---------------------------------------------------------------- `lit plan`


def load_experiment_config(path: str | Path) -> dict[str, Any]:
    config = read_yaml_mapping(path)
    if not isinstance(config.get("experiments"), dict):
        raise ConfigError(f"config file {path}: expected a mapping with an 'experiments' mapping")
    return config


def plan_as_dict(plan: Plan) -> dict[str, Any]:
    runs = [{**dataclasses.asdict(run), "overrides": list(run.overrides), "run_dir": run.run_dir} for run in plan.runs]
    tunings = [{**dataclasses.asdict(t), "overrides": list(t.overrides), "tuned": t.tuned} for t in plan.tunings.values()]
    return {"results": plan.results, "runs": runs, "tunings": tunings}


def plan_table(plan: Plan) -> str:
    columns = ("experiment", "role", "method", "depth", "seed", "run_id", "teacher", "tuned")
    rows = [[str(getattr(run, c) if getattr(run, c) is not None else "-") for c in columns] for run in plan.runs]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(text.ljust(w) for text, w in zip(row, widths)).rstrip() for row in [list(columns), *rows]]
    return "\n".join(lines)


def print_plan(config_path: str | Path, fmt: str = "table", results: str | None = None) -> Plan:
    """`lit plan`: print every run a pipeline config asks for, as a table or as JSON."""
    plan = plan_experiments(load_experiment_config(config_path), results)
    print(json.dumps(plan_as_dict(plan), indent=2) if fmt == "json" else plan_table(plan))
    return plan
