# Glue between the config and the rules: the plan of every run comes from `lit.plan`
# (also behind `lit plan`); the rules read their inputs and params from the functions here.
import hashlib
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from lit.config import ConfigError
from lit.plan import plan_experiments


envvars:
    "PATH",


# rules call the `lit` command installed beside the Python that runs snakemake, also when
# its environment is not activated (`.venv/bin/snakemake ...`)
os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
)

try:
    PLAN = plan_experiments(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

RESULTS = PLAN.results
# published results shown beside ours where data set, model and teacher match
# (ancient like every input here, file times say nothing; its content is a param, so an
# edit of it remakes the tables)
PUBLISHED = [
    p
    for p in [config.get("published", "config/reference/published.yaml")]
    if Path(p).is_file()
]
PUBLISHED_FLAG = f"--published {PUBLISHED[0]}" if PUBLISHED else ""
PUBLISHED_DIGEST = (
    hashlib.sha256(Path(PUBLISHED[0]).read_bytes()).hexdigest()[:10]
    if PUBLISHED
    else ""
)


def exclusive_threads():
    """Every core of the workflow where it has a number of them (a local run: the speed
    job then runs alone), else 1 (a cluster, whose profile asks for a node of its own).
    """
    try:
        return workflow.cores
    except WorkflowError:
        return 1


EXCLUSIVE_THREADS = exclusive_threads()
# `evaluate.onnx: true`: the speed stage also times every architecture in ONNX Runtime
# (`lit speed --onnx`).
ONNX_SPEED_FLAG = " --onnx" if config.get("evaluate", {}).get("onnx", False) else ""
SPEED_ROUNDS = config.get("evaluate", {}).get("speed_rounds", 40)
SPEED_LATENCY_RUNS = config.get("evaluate", {}).get("latency_runs", 20)
# The speed stage's settings, and the figure the tables take from its file (the fastest
# round, `lit.report.aggregate.fastest_round`), name a file the speed job writes beside
# its timings and the tables read: `<exp>-speed-settings-<digest>.txt`. The speed files
# are `ancient` inputs of the tables, across which Snakemake does not propagate a rerun
# (nor does it then look at the tables' own params): other settings retime the stage, and
# the tables, whose settings file does not exist yet, are remade in the same invocation.
# A change of how the stage measures (`memory=kept`: `lit.evaluate.speed.keep_freed_memory`)
# is named here too, so that speed files timed the former way are timed again.
SPEED_SETTINGS = (
    f"rounds={SPEED_ROUNDS} latency_runs={SPEED_LATENCY_RUNS} "
    f"onnx={bool(ONNX_SPEED_FLAG)} tables=fastest-round memory=kept"
)
SPEED_SETTINGS_DIGEST = hashlib.sha256(SPEED_SETTINGS.encode()).hexdigest()[:10]


def speed_settings_file(exp, digest=SPEED_SETTINGS_DIGEST):
    return f"{RESULTS}/{exp}/{exp}-speed-settings-{digest}.txt"


# `gpu_slots_per_device: K` (set by the gpu profile): each training job takes one of K
# slots per GPU of this machine (`lit train` reads LIT_DEVICE_SLOTS as --device-slots), so
# concurrent jobs spread over the GPUs. `train_processes: N`: each training job runs
# data-parallel over N processes (LIT_TRAIN_PROCESSES, as `lit train --processes N`). Both
# travel in the shell prefix, not in a rule's command or params: Snakemake reruns a job
# whose command text or params changed, and moving a finished sweep to other hardware
# must not retrain it.
GPU_SLOTS_PER_DEVICE = config.get("gpu_slots_per_device", 0)
TRAIN_PROCESSES = config.get("train_processes", 1)
HARDWARE_EXPORTS = [
    *(
        [f"export LIT_DEVICE_SLOTS={int(GPU_SLOTS_PER_DEVICE)}; "]
        if GPU_SLOTS_PER_DEVICE
        else []
    ),
    *(
        [f"export LIT_TRAIN_PROCESSES={int(TRAIN_PROCESSES)}; "]
        if TRAIN_PROCESSES > 1
        else []
    ),
]
if HARDWARE_EXPORTS:
    shell.prefix("set -euo pipefail; " + "".join(HARDWARE_EXPORTS))


def experiments_of_kind(kind):
    """A regex for the `exp` wildcard: the experiments of one kind (none: matches nothing)."""
    return "|".join(re.escape(e) for e in PLAN.experiments_of_kind(kind)) or "^$"


CLASSIFIER_EXPERIMENTS = experiments_of_kind("classifier")
GAN_EXPERIMENTS = experiments_of_kind("gan")


wildcard_constraints:
    exp="[^/]+",
    run="[^/]+",


def run_of(wildcards):
    return PLAN.run(wildcards.exp, wildcards.run)


def run_config(wildcards):
    return ancient(run_of(wildcards).base)


def run_args(wildcards):
    return run_of(wildcards).args


def run_dir(wildcards):
    return run_of(wildcards).run_dir


def train_teacher(wildcards):
    """The teacher's selected checkpoint, for a run that learns from one."""
    teacher = PLAN.teacher_of(run_of(wildcards))
    return [ancient(f"{teacher.run_dir}/checkpoints/best.pt")] if teacher else []


# The critical path first: a teacher, then its tuning, then the students that learn from
# it; students trained from scratch fill the cores meanwhile. Without priorities
# Snakemake started every scratch student before the teacher (measured: on 2 cores the
# default's teacher waited 48 s, and with it every KD and LIT student).
TEACHER_PRIORITY = 3
TUNING_PRIORITY = 2
LEARNER_PRIORITY = 1


def train_priority(wildcards):
    run = run_of(wildcards)
    if run.role == "teacher":
        return TEACHER_PRIORITY
    return LEARNER_PRIORITY if run.teacher else 0


def train_tuned(wildcards):
    tuned = run_of(wildcards).tuned
    return [ancient(tuned)] if tuned else []


def data_config(wildcards):
    """Data are prepared from the teacher's run config: its students read the same data."""
    return ancient(PLAN.experiment_teacher(wildcards.exp).base)


def data_args(wildcards):
    return PLAN.data_args(wildcards.exp)


def tuning_of(wildcards):
    return PLAN.tunings[wildcards.exp]


def tune_config(wildcards):
    return ancient(tuning_of(wildcards).base)


def tune_teacher(wildcards):
    return ancient(f"{tuning_of(wildcards).teacher}/checkpoints/best.pt")


def tune_args(wildcards):
    return tuning_of(wildcards).args


def tune_grids(wildcards):
    return tuning_of(wildcards).grid_args


def tune_teacher_dir(wildcards):
    return tuning_of(wildcards).teacher


def tune_out_dir(wildcards):
    return tuning_of(wildcards).out_dir


def tuning_trials(wildcards):
    return ancient(f"{tuning_of(wildcards).out_dir}/tuning.csv")


def tuning_figure(wildcards):
    return ancient(f"{tuning_of(wildcards).out_dir}/tuning.png")


def experiment_evaluations(wildcards):
    return [ancient(path) for path in PLAN.evaluations(wildcards.exp)]


def all_evaluations(wildcards):
    return [ancient(path) for path in PLAN.evaluations()]


def teacher_samples(wildcards):
    return ancient(f"{PLAN.experiment_teacher(wildcards.exp).run_dir}/samples.png")


def student_samples(wildcards):
    return ancient(f"{PLAN.shallowest_student(wildcards.exp).run_dir}/samples.png")


def all_speed_files(wildcards):
    """The speed stage's file of every classifier experiment."""
    return [
        ancient(f"{RESULTS}/{exp}/{exp}-speed.json")
        for exp in PLAN.experiments_of_kind("classifier")
    ]


def all_speed_settings_files(wildcards):
    """The speed stage's settings file of every classifier experiment (SPEED_SETTINGS)."""
    return [
        ancient(speed_settings_file(exp))
        for exp in PLAN.experiments_of_kind("classifier")
    ]


def speed_flags(wildcards, input):
    return " ".join(f"--speed {path}" for path in input.speed)


def evaluated_run_dirs(wildcards, input):
    """The run directories of a report rule's eval.json inputs."""
    return " ".join(str(Path(path).parent) for path in input.evaluations)


def report_dir(wildcards):
    return f"{RESULTS}/{wildcards.exp}"
