"""Typed run configuration: YAML plus `key=value` overrides, validated before any work.

Every key is a dataclass field; an unknown key, a value of the wrong type or an
out-of-range value raises `ConfigError` naming the dotted key, the value and what was
expected. The paper's symbols are given beside the KD and LIT weights.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config key, value or combination that cannot run; the message names the key."""


@dataclass
class DataConfig:
    name: str = "digits"  # a registered data set (listed in `lit.catalog`)
    root: str = "data"  # where data sets are downloaded and cached
    download: bool = False  # allow downloading a missing data set
    val_fraction: float = 0.1  # share of the training set held out for validation and selection
    split_seed: int = 0  # seeds the validation hold-out: one split shared by a teacher and its students
    options: dict[str, Any] = field(default_factory=dict)  # the data set's own options


@dataclass
class ModelConfig:
    family: str = "resnet"  # a registered sectioned family (listed in `lit.catalog`)
    depth: int = 20
    options: dict[str, Any] = field(default_factory=dict)  # the family's own options (widths, cardinality, ...)


@dataclass
class MethodConfig:
    name: str = "scratch"  # scratch | kd | lit | fitnets | at | dkd | reviewkd | slimming | stargan | gan_lit (listed in `lit.catalog`)
    teacher: str | None = None  # teacher run directory (its selected checkpoint) or a checkpoint file
    hard_weight: float = 0.95  # alpha: weight of the HARD-label cross-entropy in KD (LIT code convention)
    temperature: float = 6.0  # tau: softening temperature of KD
    kd_weight: float = 0.75  # beta: LIT weight of KD against the summed section MSE
    kd_weight_schedule: Literal["constant", "linear"] = "constant"  # linear: beta rises to 1 (KD only) over phase 1
    copy_stem_head: bool = True  # LIT: the student's stem and head start as copies of the teacher's
    freeze_stem_head: bool = True  # LIT phase 1: stem and head are frozen
    finetune_freeze_stem_head: bool = True  # LIT phase 2: stem and head stay frozen (official CIFAR code)
    # methods with a teacher: the student's sections start from a subset of the teacher's blocks
    # (teacher_blocks; which ones: student_init_blocks = first | last | spaced), or fresh (the paper's)
    student_init: Literal["fresh", "teacher_blocks"] = "fresh"
    student_init_blocks: Literal["first", "last", "spaced"] = "spaced"
    hint_section: int | None = None  # FitNets: the hint/guided layer is the output of this section (None: the middle, (N - 1) // 2)
    objective_scale: float = 0.5  # LIT phase 1: factor on beta * KD + (1 - beta) * sum MSE (0.5: official CIFAR code, 1.0: official VDCNN code)
    regressor_activation: Literal["relu", "none"] = "relu"  # FitNets: non-linearity after the regressor's batch norm (relu: the hint's)
    # the baselines AT, DKD, ReviewKD and CRD: each key read by its own method only (named as in its paper or official code)
    at_beta: float = 1000.0  # AT (ICLR 2017): beta, weight of the summed attention losses (official code: beta * sum_j mean((Q_s - Q_t)^2))
    dkd_alpha: float = 1.0  # DKD (CVPR 2022): alpha, weight of TCKD (target-class KD)
    dkd_beta: float = 8.0  # DKD: beta, weight of NCKD (non-target-class KD); the official default (its CIFAR ResNet-56/110 pairs: 2.0)
    dkd_temperature: float = 4.0  # DKD: T, its own (KD's method.temperature is LIT's 6)
    dkd_warmup_epochs: int = 20  # DKD: TCKD and NCKD weighted min(epoch / this, 1), epochs counted from 1 (0: no warm-up)
    reviewkd_weight: float = 1.0  # ReviewKD (CVPR 2021): weight of the hierarchical context loss (the official code's default)
    reviewkd_warmup_epochs: int = 20  # ReviewKD: the HCL weighted min(epoch / this, 1), epochs counted from 0 (0: no warm-up)
    crd_gamma: float = 1.0  # CRD (ICLR 2020) + KD: gamma, weight of the cross-entropy (official `-r`)
    crd_alpha: float = 1.0  # CRD + KD: alpha, weight of KD (official `-a`; 1 in its CRD+KD runs)
    crd_beta: float = 0.8  # CRD: beta, weight of the contrastive loss (official `-b`)
    crd_kd_temperature: float = 4.0  # CRD + KD: T of its KD term (official `--kd_T`)
    crd_feat_dim: int = 128  # CRD: dimension of the embeddings and memory banks (official `--feat_dim`)
    crd_nce_k: int = 16384  # CRD: negatives per example (official `--nce_k`)
    crd_nce_t: float = 0.07  # CRD: temperature of the contrast scores (official `--nce_t`)
    crd_nce_m: float = 0.5  # CRD: momentum of the memory banks' update (official `--nce_m`)
    tuned: str | None = None  # a tuned.json of `lit tune`: its temperature, hard_weight and kd_weight replace these keys
    sparsity: float = 1e-4  # slimming: lambda, weight of the L1 penalty on the prunable batch norms' scales (phase sparsity)
    prune_ratio: float = 0.4  # slimming: fraction of the prunable channels removed (global threshold) before phase finetune
    # StarGAN (CVPR 2018) objective, read by `stargan` and by `gan_lit`'s adversarial fine-tuning
    n_critic: int = 5  # discriminator updates per generator update
    lambda_gp: float = 10.0  # weight of the WGAN-GP gradient penalty
    lambda_cls: float = 1.0  # weight of the domain classification loss
    lambda_rec: float = 10.0  # weight of the cycle reconstruction loss
    d_conv_dim: int = 64  # discriminator width
    d_repeat_num: int | None = None  # discriminator down-sampling layers (None: down to a 2x2 map)


@dataclass
class PhaseConfig:
    """Optimisation of one training phase; the learning rate is set every step from these.
    A phase counts epochs, or `iterations` (endless batches) when that is set."""

    epochs: int = 10
    iterations: int | None = None  # an iteration-based phase (GANs): this many steps, not `epochs`
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    group_lr: dict[str, float] = field(default_factory=dict)  # lr of a method's named parameter group (discriminator)
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam's
    weight_decay: float = 1e-4
    schedule: Literal["multistep", "cosine", "linear", "constant"] = "multistep"
    milestones: list[int] = field(default_factory=list)  # epochs (iterations) within the phase where lr *= gamma
    gamma: float = 0.1
    decay_start: int | None = None  # linear: the step (within the phase) where lr starts falling to 0 (None: half-way)
    warmup_iters: int = 0  # iterations at `warmup_lr` before the schedule starts (the ResNet paper: ResNet-110)
    warmup_lr: float = 0.01


@dataclass
class TrainConfig:
    batch_size: int = 128
    eval_batch_size: int = 512
    lr_reference_batch: int | None = None  # if set, every lr is scaled by batch_size / lr_reference_batch
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast where the hardware has it
    channels_last: bool = True
    compile: bool = False  # opt-in torch.compile of the student (and teacher)
    threads: int | None = None  # torch intra-op threads on CPU (None: torch's default)
    progress: Literal["auto", "on", "off"] = "auto"  # auto: a progress bar when attached to a terminal
    log_every: int = 100  # iteration-based phases: one metrics line per this many iterations
    checkpoint_every: int = 1000  # iteration-based phases: validate and checkpoint every this many iterations
    selection: Literal["val", "last"] = "val"  # the model a run reports: best on validation, or the last epoch's
    # experiment trackers fed every metrics.jsonl record (the `tracking` extra); no result depends on them
    loggers: list[Literal["tensorboard", "mlflow"]] = field(default_factory=list)
    phases: dict[str, PhaseConfig] = field(default_factory=dict)  # per phase of the method


@dataclass
class EvaluateConfig:
    """What a run scores beyond its selected and last checkpoints, and how `lit evaluate`
    scores generators (FID)."""

    # the test split after every epoch, logged as `test_acc` for the paper's protocol (best
    # test epoch, an oracle); selection, tuning and stopping never read it
    test_every_epoch: bool = False
    fid_images: int | None = None  # test images translated for FID (None: all)
    fid_batch_size: int = 50
    fid_weights: Literal["torchscript", "pytorch-fid"] = "torchscript"  # torchscript: shipped, offline


@dataclass
class RunConfig:
    seed: int = 0  # seeds initialisation, batch order and augmentation
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- building from plain data


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"config key {key!r}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):  # YAML 1.1 reads on/off as booleans
            value = "on" if value else "off"
        if value not in args:
            raise ConfigError(f"config key {key!r}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 1e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, str, bool) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        where = f" under {prefix!r}" if prefix else ""
        raise ConfigError(f"unknown config key {_join(prefix, unknown[0])!r} (known keys{where}: {', '.join(names)})")
    kwargs = {name: _convert(values[name], hints[name], _join(prefix, name)) for name in names if name in values}
    return cls(**kwargs)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# ---------------------------------------------------------------- overrides and checks


def apply_override(values: dict[str, Any], override: str) -> None:
    """Apply one `dotted.key=value` override (the value is read as YAML) to a nested dict."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key=value")
    key, raw = override.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = values
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {'.'.join(parts[: i + 1])!r} is not a mapping")
        node = child
    node[parts[-1]] = value


def validate(cfg: RunConfig) -> RunConfig:
    """Checks beyond types: ranges and combinations. Names that must exist in a registry
    (data sets, families, methods, phases) are checked one layer up, by
    `lit.engine.runconfig`, so that this module imports no registry."""
    checks: list[tuple[bool, str, Any, str]] = [
        (0.0 <= cfg.data.val_fraction < 1.0, "data.val_fraction", cfg.data.val_fraction, "a number in [0, 1)"),
        (cfg.model.depth > 0, "model.depth", cfg.model.depth, "a positive integer"),
        (0.0 <= cfg.method.hard_weight <= 1.0, "method.hard_weight", cfg.method.hard_weight, "a number in [0, 1]"),
        (cfg.method.temperature > 0, "method.temperature", cfg.method.temperature, "a positive number"),
        (0.0 <= cfg.method.kd_weight <= 1.0, "method.kd_weight", cfg.method.kd_weight, "a number in [0, 1]"),
        (cfg.method.hint_section is None or cfg.method.hint_section >= 0, "method.hint_section", cfg.method.hint_section,
         "a non-negative section index or null (the middle section)"),
        (math.isfinite(cfg.method.sparsity) and cfg.method.sparsity >= 0, "method.sparsity", cfg.method.sparsity,
         "a non-negative number (lambda of the L1 on batch-norm scales; the slimming paper: 1e-4)"),
        (0.0 <= cfg.method.prune_ratio < 1.0, "method.prune_ratio", cfg.method.prune_ratio,
         "a number in [0, 1) (the fraction of prunable channels removed; the slimming paper: 0.4 to 0.7)"),
        (math.isfinite(cfg.method.objective_scale) and cfg.method.objective_scale > 0, "method.objective_scale",
         cfg.method.objective_scale, "a positive number (0.5: the official CIFAR code, 1.0: the official VDCNN code)"),
        *[(math.isfinite(value) and value >= 0, f"method.{key}", value, f"a non-negative number ({meaning})") for key, value, meaning in (
            ("at_beta", cfg.method.at_beta, "beta, the weight of AT's attention losses; the official code: 1000"),
            ("dkd_alpha", cfg.method.dkd_alpha, "alpha, the weight of TCKD; the official DKD code: 1.0"),
            ("dkd_beta", cfg.method.dkd_beta, "beta, the weight of NCKD; the official DKD code: 8.0"),
            ("reviewkd_weight", cfg.method.reviewkd_weight, "the weight of ReviewKD's HCL; the official code: 1.0"),
            ("crd_gamma", cfg.method.crd_gamma, "gamma, CRD's weight of the cross-entropy; the official code: 1"),
            ("crd_alpha", cfg.method.crd_alpha, "alpha, CRD's weight of KD; the official CRD+KD: 1"),
            ("crd_beta", cfg.method.crd_beta, "beta, the weight of CRD's contrastive loss; the official code: 0.8"),
        )],
        *[(math.isfinite(value) and value > 0, f"method.{key}", value, f"a positive number ({meaning})") for key, value, meaning in (
            ("crd_kd_temperature", cfg.method.crd_kd_temperature, "T of CRD's KD term; the official code: 4"),
            ("crd_nce_t", cfg.method.crd_nce_t, "the temperature of CRD's contrast scores; the official code: 0.07"),
        )],
        (cfg.method.crd_feat_dim >= 1, "method.crd_feat_dim", cfg.method.crd_feat_dim,
         "a positive integer (CRD's embedding dimension; the official code: 128)"),
        (cfg.method.crd_nce_k >= 1, "method.crd_nce_k", cfg.method.crd_nce_k,
         "a positive integer (CRD's negatives per example; the official code: 16384)"),
        (0.0 <= cfg.method.crd_nce_m < 1.0, "method.crd_nce_m", cfg.method.crd_nce_m,
         "a number in [0, 1) (the momentum of CRD's memory update; the official code: 0.5)"),
        (math.isfinite(cfg.method.dkd_temperature) and cfg.method.dkd_temperature > 0, "method.dkd_temperature",
         cfg.method.dkd_temperature, "a positive number (T of DKD; the official code: 4)"),
        (cfg.method.dkd_warmup_epochs >= 0, "method.dkd_warmup_epochs", cfg.method.dkd_warmup_epochs,
         "a non-negative integer (epochs of DKD's linear warm-up; the official code: 20; 0: none)"),
        (cfg.method.reviewkd_warmup_epochs >= 0, "method.reviewkd_warmup_epochs", cfg.method.reviewkd_warmup_epochs,
         "a non-negative integer (epochs of ReviewKD's linear warm-up; the official code: 20; 0: none)"),
        (cfg.method.n_critic >= 1, "method.n_critic", cfg.method.n_critic, "a positive integer"),
        (cfg.method.d_conv_dim >= 1, "method.d_conv_dim", cfg.method.d_conv_dim, "a positive integer"),
        (cfg.method.d_repeat_num is None or cfg.method.d_repeat_num >= 1, "method.d_repeat_num", cfg.method.d_repeat_num,
         "a positive integer or null"),
        (cfg.train.batch_size > 0, "train.batch_size", cfg.train.batch_size, "a positive integer"),
        (cfg.train.eval_batch_size > 0, "train.eval_batch_size", cfg.train.eval_batch_size, "a positive integer"),
        (cfg.train.log_every > 0, "train.log_every", cfg.train.log_every, "a positive integer"),
        (cfg.train.checkpoint_every > 0, "train.checkpoint_every", cfg.train.checkpoint_every, "a positive integer"),
        (len(set(cfg.train.loggers)) == len(cfg.train.loggers), "train.loggers", cfg.train.loggers,
         "each tracker at most once (tensorboard, mlflow)"),
        (cfg.evaluate.fid_images is None or cfg.evaluate.fid_images > 0, "evaluate.fid_images", cfg.evaluate.fid_images,
         "a positive integer or null (all test images)"),
        (cfg.evaluate.fid_batch_size > 0, "evaluate.fid_batch_size", cfg.evaluate.fid_batch_size, "a positive integer"),
    ]
    for ok, key, value, expected in checks:
        if not ok:
            raise ConfigError(f"config key {key!r}: expected {expected}, got {value!r}")
    for phase, settings in cfg.train.phases.items():
        validate_phase(f"train.phases.{phase}", settings)
    return cfg


def validate_phase(key: str, settings: PhaseConfig) -> None:
    if settings.epochs < 0:
        raise ConfigError(f"config key {key}.epochs: expected a non-negative integer, got {settings.epochs}")
    if settings.iterations is not None and settings.iterations < 0:
        raise ConfigError(f"config key {key}.iterations: expected a non-negative integer or null, got {settings.iterations}")
    for name, lr in {"lr": settings.lr, **{f"group_lr.{g}": v for g, v in settings.group_lr.items()}}.items():
        if lr <= 0:
            raise ConfigError(f"config key {key}.{name}: expected a positive number, got {lr}")
    if len(settings.betas) != 2 or not all(0.0 <= b < 1.0 for b in settings.betas):
        raise ConfigError(f"config key {key}.betas: expected two numbers in [0, 1), got {settings.betas}")
    length, unit = (settings.epochs, "epochs") if settings.iterations is None else (settings.iterations, "iterations")
    bad = [m for m in settings.milestones if not 0 < m <= max(length, 1)]
    if bad:
        raise ConfigError(f"config key {key}.milestones: {bad} lie outside the phase's {length} {unit}")
    if settings.decay_start is not None and (settings.decay_start < 0 or (unit == "iterations" and settings.decay_start > length)):
        raise ConfigError(f"config key {key}.decay_start: expected a step in [0, the phase's {length} {unit}], got {settings.decay_start}")


def from_dict(values: dict[str, Any]) -> RunConfig:
    return validate(_build(RunConfig, values, ""))


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping, or a ConfigError saying what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(values).__name__}")
    return values


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML run config (or start from the defaults) and apply `key=value` overrides."""
    values: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    for override in overrides:
        apply_override(values, override)
    return from_dict(values)


TUNED_KEYS = ("temperature", "hard_weight", "kd_weight")


def apply_tuned(cfg: RunConfig) -> RunConfig:
    """The config with `method.tuned`'s values (tau, alpha, beta chosen on validation by
    `lit tune`) in place of `method.temperature`, `hard_weight` and `kd_weight`."""
    import json

    if not cfg.method.tuned:
        return cfg
    path = Path(cfg.method.tuned)
    try:
        tuned = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"config key 'method.tuned': cannot read tuned values from {path} ({err})") from None
    bad = [k for k in TUNED_KEYS if not isinstance(tuned, dict) or isinstance(tuned.get(k), bool) or not isinstance(tuned.get(k), (int, float))]
    if bad:
        raise ConfigError(f"config key 'method.tuned': {path} lacks a number for {', '.join(bad)} (expected the tuned.json of `lit tune`)")
    values = cfg.to_dict()
    values["method"].update({k: float(tuned[k]) for k in TUNED_KEYS})
    try:
        return from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"config key 'method.tuned': {path} holds a value out of range: {err}") from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
