"""A run config checked against the catalogue, and its content hash.

`lit.config` knows the keys and their types; this module checks them against `lit.catalog`
(which data sets, families, methods and phases exist and which `method.*` keys and phases
each method reads). Neither imports torch, so planning a sweep does not either. The
content hash is taken over what the method reads, so a value it never reads (beta for
KD, say) leaves a run's id unchanged, and every value it reads changes it. The pipeline's
run ids and the resume check both use `config_hash`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lit.catalog import DATASETS, METHODS, MODELS
from lit.config import ConfigError, MethodConfig, RunConfig, from_dict, load_config

# where data lives, whether it may be downloaded, how progress shows, how often the state
# is saved (resume is exact) and which trackers watch the run change no result
UNHASHED_KEYS = (("data", "root"), ("data", "download"), ("train", "progress"), ("train", "checkpoint_every"),
                 ("train", "loggers"))

# `method.*` keys added to methods that already had published run ids (see config_hash)
LATER_KEYS = ("student_init", "student_init_blocks")


def check_run_config(cfg: RunConfig) -> RunConfig:
    """`cfg` if every name it gives exists and its method has what it needs; else a
    ConfigError naming the key."""
    for ok, key, value, known in (
        (cfg.data.name in DATASETS, "data.name", cfg.data.name, DATASETS.names()),
        (cfg.model.family in MODELS, "model.family", cfg.model.family, MODELS.names()),
        (cfg.method.name in METHODS, "method.name", cfg.method.name, METHODS.names()),
    ):
        if not ok:
            raise ConfigError(f"config key {key!r}: expected one of {', '.join(known)}, got {value!r}")
    method = METHODS.get(cfg.method.name)
    known_phases = {phase for name in METHODS.names() for phase in METHODS.get(name).phases}
    for phase in cfg.train.phases:
        if phase not in known_phases:
            raise ConfigError(f"unknown config key 'train.phases.{phase}' (phases of the methods: {', '.join(sorted(known_phases))})")
    for phase in method.phases:
        if phase not in cfg.train.phases:
            raise ConfigError(f"config key 'train.phases.{phase}' is required by method {cfg.method.name!r}")
    if method.needs_teacher and not cfg.method.teacher:
        raise ConfigError(f"config key 'method.teacher' is required by method {cfg.method.name!r} (a teacher run directory or checkpoint)")
    if method.reshapes_student and cfg.train.compile:
        raise ConfigError(
            f"config key 'train.compile': method {cfg.method.name!r} changes the student's architecture during the run "
            "(pruning), which torch.compile is not supported with; set it to false"
        )
    if method.selects_on_validation and cfg.data.val_fraction <= 0.0 and cfg.train.selection != "last":
        raise ConfigError(
            f"config key 'data.val_fraction' is {cfg.data.val_fraction!r} (no validation split), so method {cfg.method.name!r} "
            f"has nothing to select its checkpoint on: set config key 'train.selection' to 'last' (report the last "
            f"epoch's model, the paper's full-training-set protocol) or give data.val_fraction in (0, 1); "
            f"train.selection is {cfg.train.selection!r}"
        )
    if cfg.evaluate.test_every_epoch and not method.selects_on_validation:
        raise ConfigError(
            f"config key 'evaluate.test_every_epoch': method {cfg.method.name!r} trains a generator, which has no "
            "test accuracy to log; set it to false"
        )
    return cfg


def load_run_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """`lit.config.load_config`, then `check_run_config`: what every command reads."""
    return check_run_config(load_config(path, overrides))


def run_config_from_dict(values: dict[str, Any]) -> RunConfig:
    return check_run_config(from_dict(values))


def effective_config(cfg: RunConfig) -> RunConfig:
    """The config with what the method never reads put back to its default (other
    methods' keys and phases), so that two runs that must give the same result have
    the same config, and the same content hash."""
    method = METHODS.get(cfg.method.name)
    values = cfg.to_dict()
    defaults = MethodConfig().__dict__
    values["method"] = {k: (v if k == "name" or k in method.uses else defaults[k]) for k, v in values["method"].items()}
    values["train"]["phases"] = {p: v for p, v in values["train"]["phases"].items() if p in method.phases}
    return run_config_from_dict(values)


def config_hash(cfg: RunConfig, length: int = 10) -> str:
    """A content hash of the effective config: any change that can change a result changes it."""
    values = effective_config(cfg).to_dict()
    for section, key in UNHASHED_KEYS:
        values[section].pop(key)
    # only the method keys the method reads: a key added for another method (a new baseline's
    # weight) leaves every existing run id as it was
    uses = METHODS.get(cfg.method.name).uses
    values["method"] = {key: value for key, value in values["method"].items() if key == "name" or key in uses}
    # keys a method began to read after its runs had ids: hashed only when set away from
    # their default, so that the runs made before keep their ids
    defaults = MethodConfig()
    for key in LATER_KEYS:
        if key in values["method"] and values["method"][key] == getattr(defaults, key):
            del values["method"][key]
    # the code revisions of the data set, family and method where raised above 1 (so that
    # the ids of runs untouched by such a change stay as they were)
    revisions = {kind: registry.revision(name) for kind, registry, name in (
        ("data", DATASETS, cfg.data.name), ("model", MODELS, cfg.model.family), ("method", METHODS, cfg.method.name))}
    revisions = {kind: revision for kind, revision in revisions.items() if revision > 1}
    if revisions:
        values["revisions"] = revisions
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]
