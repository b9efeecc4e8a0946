"""The one training loop for every classifier method.

Phases come from the method; each phase has its own optimiser and schedule. After every
epoch the student is validated, the best-on-validation model is kept, and the complete
training state is written atomically, so `resume=True` continues a killed run to the same
final weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from lit.config import ConfigError, PhaseConfig, RunConfig, apply_tuned, config_hash, dump_config, from_dict
from lit.data import Batches, DataSplits, load_data
from lit.runtime.checkpoint import load_checkpoint, save_checkpoint
from lit.runtime.files import atomic_write_text
from lit.runtime.device import autocast, compile_mode, compile_sectioned, resolve_device, resolve_precision
from lit.engine.frozen import freeze_for_inference
from lit.models.io import load_model, model_spec, save_model, unwrap
from lit.runtime.runlog import MetricsLog, write_json
from lit.engine.schedule import learning_rate
from lit.runtime.seeding import rng_state, seed_everything, set_rng_state
from lit.evaluate.accuracy import accuracy
from lit.methods import METHODS, Method
from lit.models import build_model


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite: the run stops, its last good checkpoint stays."""


@dataclass
class Progress:
    """Where a run is; all of it goes into the training-state checkpoint."""

    phase_index: int = 0
    epoch_in_phase: int = 0  # completed epochs of the current phase
    epoch: int = 0  # completed epochs over all phases
    best_val_acc: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def build_student(cfg: RunConfig, data: DataSplits) -> tuple[nn.Module, dict[str, Any]]:
    options = {"in_channels": data.in_channels, "num_classes": data.num_classes, **cfg.model.options}
    spec = model_spec(cfg.model.family, cfg.model.depth, options)
    return build_model(spec["family"], spec["depth"], **spec["options"]), spec


def load_teacher(cfg: RunConfig, student_spec: dict[str, Any], device: torch.device) -> nn.Module:
    teacher, state = load_model(cfg.method.teacher, "best", device)
    teacher_spec = state["spec"]
    if teacher_spec["options"].get("num_classes") != student_spec["options"].get("num_classes"):
        raise ConfigError(
            f"config key 'method.teacher': teacher {cfg.method.teacher} predicts "
            f"{teacher_spec['options'].get('num_classes')} classes, the data set has {student_spec['options'].get('num_classes')}"
        )
    if cfg.method.name == "lit" and teacher_spec["family"] != student_spec["family"]:
        raise ConfigError(
            f"config key 'method.teacher': LIT needs a teacher of the student's family "
            f"({student_spec['family']}), got a {teacher_spec['family']} teacher"
        )
    return teacher


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> None:
        cfg = apply_tuned(cfg)  # tuned tau, alpha, beta first: config.yaml records the values used
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.state_path = self.run_dir / "checkpoints" / "state.pt"
        self.resuming = self.check_run_dir(resume)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.train.device)
        self.dtype = resolve_precision(cfg.train, self.device)
        self.data = load_data(cfg.data)
        self.student, self.spec = build_student(cfg, self.data)
        teacher = load_teacher(cfg, self.spec, self.device) if METHODS.get(cfg.method.name).needs_teacher else None
        self.method: Method = METHODS.get(cfg.method.name)(cfg.method, self.student, teacher)
        if teacher is not None:  # after the method read it: LIT copies its stem and head, FitNets sizes its regressor by its batch norms
            freeze_for_inference(teacher)
        self.memory_format = torch.contiguous_format
        if cfg.train.channels_last and self.data.kind == "image":
            self.memory_format = torch.channels_last
        for module in (self.student, teacher, self.method.extra_modules()):
            if module is not None:
                module.to(self.device, memory_format=self.memory_format)
        if cfg.train.compile:
            for model in (self.student, teacher):
                if model is not None:
                    compile_sectioned(model, compile_mode(self.device))
        self.loader_rng = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.train_batches = Batches(self.data.train, self.data, cfg.train.batch_size, self.device, True, self.loader_rng, self.memory_format)
        if len(self.train_batches) == 0:
            raise ConfigError(f"data set {cfg.data.name!r} gives an empty training split (data.options {cfg.data.options})")
        self.val_batches = Batches(self.data.val, self.data, cfg.train.eval_batch_size, self.device, False, memory_format=self.memory_format)
        self.log = MetricsLog(self.run_dir / "metrics.jsonl")
        self.progress = Progress()
        self.optimizer: torch.optim.Optimizer | None = None
        # written only now: a config that cannot build its data or models leaves no run directory
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.yaml", dump_config(cfg))

    # ------------------------------------------------------------ run directory and state

    def check_run_dir(self, resume: bool) -> bool:
        """Whether the run continues a saved state; refuses to overwrite one or to resume
        under a config that could change the result (where data lives or whether a
        progress bar shows may change)."""
        config_path = self.run_dir / "config.yaml"
        if self.state_path.exists() and not resume:
            raise ConfigError(f"run directory {self.run_dir} already holds a training state: pass --resume to continue it, or choose a new run directory")
        if resume and config_path.exists():
            saved = from_dict(yaml.safe_load(config_path.read_text()))
            if config_hash(saved) != config_hash(self.cfg):
                differing = _differing_keys(saved.to_dict(), self.cfg.to_dict())
                raise ConfigError(f"cannot resume {self.run_dir}: its config differs in {', '.join(differing)}")
        return resume and self.state_path.exists()

    def save_state(self) -> None:
        state = {
            "format": "lit-checkpoint/1", "kind": "train-state",
            "progress": vars(self.progress), "spec": self.spec,
            "model": unwrap(self.student).state_dict(), "extra": self.method.extra_modules().state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "rng": rng_state(), "loader_rng": self.loader_rng.get_state(),
        }
        save_checkpoint(state, self.state_path)

    def restore_state(self) -> dict[str, Any]:
        state = load_checkpoint(self.state_path, map_location="cpu", kind="train-state")
        unwrap(self.student).load_state_dict(state["model"])
        self.method.extra_modules().load_state_dict(state["extra"])
        self.progress = Progress(**state["progress"])
        set_rng_state(state["rng"])
        self.loader_rng.set_state(state["loader_rng"])
        self.log.truncate_after(self.progress.epoch, key="epoch")
        return state

    # ------------------------------------------------------------ the loop

    def run(self) -> dict[str, Any]:
        saved = self.restore_state() if self.resuming else None
        if not self.resuming:  # a fresh run starts a fresh log (a killed first epoch may have left one)
            self.log.path.unlink(missing_ok=True)
        started = time.perf_counter()
        phases = self.method.phases
        for phase_index in range(self.progress.phase_index, len(phases)):
            phase = phases[phase_index]
            settings = self.cfg.train.phases[phase]
            params = self.method.start_phase(phase)
            self.optimizer = self.make_optimizer(settings, params)
            if saved is not None and saved["optimizer"] and phase_index == self.progress.phase_index:
                self.optimizer.load_state_dict(saved["optimizer"])
            saved = None
            if self.progress.phase_index != phase_index:
                self.progress.phase_index, self.progress.epoch_in_phase = phase_index, 0
            while self.progress.epoch_in_phase < settings.epochs:
                record = self.train_epoch(phase, settings)
                self.end_epoch(record)
        return self.finish(time.perf_counter() - started)

    def make_optimizer(self, settings: PhaseConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        lr = self.scaled_lr(settings)
        if settings.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=settings.weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=settings.momentum, nesterov=settings.nesterov, weight_decay=settings.weight_decay)

    def scaled_lr(self, settings: PhaseConfig) -> float:
        reference = self.cfg.train.lr_reference_batch
        return settings.lr * (self.cfg.train.batch_size / reference if reference else 1.0)

    def train_epoch(self, phase: str, settings: PhaseConfig) -> dict[str, Any]:
        self.method.train_mode()
        steps, epoch = len(self.train_batches), self.progress.epoch_in_phase
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=self.device)
        seen, started = 0, time.perf_counter()
        for step, (inputs, labels) in enumerate(self.progress_bar(self.train_batches, phase)):
            lr = learning_rate(settings, self.scaled_lr(settings), epoch, step, steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with autocast(self.device, self.dtype):
                logits, terms = self.method.losses(phase, inputs, labels, (epoch + step / steps) / max(settings.epochs, 1))
            loss = sum(terms.values())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float()
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            if self.device.type == "cpu" or step % 25 == 0 or step == steps - 1:
                self.check_finite(loss, terms, phase, step)
        seconds = time.perf_counter() - started
        record = {f"loss_{name}": (total / steps).item() for name, total in sums.items()}
        record.update(phase=phase, phase_epoch=epoch + 1, lr=lr, train_acc=(correct / max(seen, 1)).item(),
                      images_per_s=seen / seconds, epoch_seconds=seconds)
        record["loss"] = sum(v for k, v in record.items() if k.startswith("loss_"))
        return record

    def check_finite(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], phase: str, step: int) -> None:
        if not torch.isfinite(loss.detach()).item():
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            raise TrainingDiverged(
                f"loss became {loss.item()} in phase {phase!r}, epoch {self.progress.epoch_in_phase + 1}, step {step} "
                f"({values}); the run stopped and its last complete checkpoint is kept. Lower the learning rate or use train.precision=fp32."
            )

    def progress_bar(self, batches: Batches, phase: str):
        wanted = self.cfg.train.progress
        if wanted == "off" or (wanted == "auto" and not sys.stderr.isatty()):
            return batches
        from tqdm import tqdm

        return tqdm(batches, desc=f"{phase} epoch {self.progress.epoch_in_phase + 1}", leave=False, file=sys.stderr)

    def end_epoch(self, record: dict[str, Any]) -> None:
        val_acc, val_loss = accuracy(self.student, self.val_batches, self.device, self.dtype)
        progress = self.progress
        progress.epoch += 1
        progress.epoch_in_phase += 1
        record.update(epoch=progress.epoch, val_acc=val_acc, val_loss=val_loss)
        if val_acc > progress.best_val_acc:
            progress.best_val_acc, progress.best_epoch = val_acc, progress.epoch
            save_model(self.student, self.spec, self.run_dir / "checkpoints" / "best.pt", epoch=progress.epoch, val_acc=val_acc)
        save_model(self.student, self.spec, self.run_dir / "checkpoints" / "last.pt", epoch=progress.epoch, val_acc=val_acc)
        # the record before the state: a run killed between the two redoes this epoch (and
        # truncates its record) instead of resuming past an epoch that was never logged
        self.log.append(record)
        self.save_state()
        print(
            f"[{self.cfg.method.name}] epoch {progress.epoch} ({record['phase']} {record['phase_epoch']}): "
            f"loss {record['loss']:.4f} train_acc {record['train_acc']:.4f} val_acc {val_acc:.4f} "
            f"lr {record['lr']:.4g} {record['images_per_s']:.0f} img/s",
            file=sys.stderr, flush=True,
        )

    def finish(self, seconds: float) -> dict[str, Any]:
        records = self.log.records()
        summary = {
            "status": "complete", "method": self.cfg.method.name, "family": self.cfg.model.family,
            "depth": self.cfg.model.depth, "seed": self.cfg.seed, "data": self.cfg.data.name,
            "epochs": self.progress.epoch, "best_epoch": self.progress.best_epoch,
            "best_val_acc": self.progress.best_val_acc, "last_val_acc": records[-1]["val_acc"] if records else None,
            "mean_images_per_s": sum(r["images_per_s"] for r in records) / max(len(records), 1),
            "device": str(self.device), "precision": str(self.dtype).replace("torch.", ""),
            "seconds_this_session": seconds,
        }
        write_json(self.run_dir / "summary.json", summary)
        return summary


def _differing_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differing_keys(a, b, name + ".")
        elif a != b:
            keys.append(f"{name} ({a!r} -> {b!r})")
    return keys


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    return Trainer(cfg, run_dir, resume).run()
