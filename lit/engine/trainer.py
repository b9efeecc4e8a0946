"""The one training loop, for every family and method.

Phases come from the method; each phase has its own optimisers (one per parameter group
the method names) and schedule, and counts epochs or, where `iterations` is set,
iterations over endless batches (GANs). A method yields the updates of each batch; the
engine applies them in order, stops on a NaN or infinite loss, and logs every loss term.
After every epoch (every `train.checkpoint_every` iterations) the student is validated
where the method selects on validation, `best.pt` and `last.pt` are written, and the
complete training state is written atomically, so `resume=True` continues a killed run
to the same final weights as an uninterrupted one.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import torch
import yaml
from torch import nn

from lit.config import ConfigError, PhaseConfig, RunConfig, apply_tuned, dump_config, from_dict
from lit.data import Batches, BatchStream, DataSplits, load_data
from lit.engine.frozen import freeze_for_inference
from lit.engine.runconfig import check_run_config, config_hash, effective_config
from lit.engine.schedule import learning_rate
from lit.evaluate.accuracy import accuracy
from lit.evaluate.cost import count_parameters
from lit.methods import METHODS, Method
from lit.methods.base import MethodContext, Step, Update
from lit.models import build_model
from lit.models.io import load_model, model_spec, save_model, unwrap
from lit.models.teacher_init import init_from_teacher_blocks
from lit.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lit.runtime.device import autocast, compile_mode, compile_sectioned, resolve_device, resolve_precision
from lit.runtime.distributed import Group, join, launched_processes, leave
from lit.runtime.files import atomic_write_text
from lit.runtime.provenance import device_name, now, provenance
from lit.runtime.runlog import MetricsLog, write_json
from lit.runtime.seeding import rng_state, seed_everything, set_rng_state
from lit.runtime.trackers import Trackers, check_trackers, record_step


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite: the run stops, its last good checkpoint stays."""


@dataclass
class Progress:
    """Where a run is; all of it goes into the training-state checkpoint."""

    phase_index: int = 0
    epoch_in_phase: int = 0  # completed epochs of the current phase
    epoch: int = 0  # completed epochs over all epoch-based phases
    iteration_in_phase: int = 0  # completed iterations of the current (iteration-based) phase
    iteration: int = 0  # completed iterations over all iteration-based phases
    best_val_acc: float = -1.0
    best_epoch: int = 0
    reshaped_at_epoch: int = 0  # epochs done when the method last reshaped the student: earlier models are not candidates
    history: list[dict[str, Any]] = field(default_factory=list)


class Meter:
    """Sums of the loss terms, correct predictions and images since the last record."""

    def __init__(self, device: torch.device) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.correct = torch.zeros((), device=device)
        self.classified = self.images = 0
        self.started = time.perf_counter()

    def add(self, update: Update, labels: torch.Tensor) -> None:
        for name, value in update.terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float()
            self.counts[name] = self.counts.get(name, 0) + 1
        if update.logits is not None:
            self.correct += (update.logits.argmax(1) == labels).sum()
            self.classified += len(labels)

    def record(self, phase: str, lrs: dict[str, float], group: Group = Group()) -> dict[str, Any]:
        """The interval's means; in a data-parallel run over every rank's slices (each loss
        term the mean of the ranks' means, accuracy and images over all of them)."""
        seconds = time.perf_counter() - self.started
        if group.active:
            self.sums = {name: group.average(total) for name, total in self.sums.items()}
            counts = group.total(torch.tensor([self.correct.item(), self.classified, self.images], dtype=torch.float64))
            self.correct, self.classified, self.images = counts[0], int(counts[1]), int(counts[2])
        record: dict[str, Any] = {f"loss_{name}": (total / self.counts[name]).item() for name, total in self.sums.items()}
        first, *others = lrs
        record.update(phase=phase, lr=lrs[first], **{f"lr_{group}": lrs[group] for group in others})
        if self.classified:
            record["train_acc"] = (self.correct / self.classified).item()
        record.update(images_per_s=self.images / seconds, seconds=seconds)
        record["loss"] = sum(v for k, v in record.items() if k.startswith("loss_"))
        return record


def phase_length(settings: PhaseConfig) -> int:
    return settings.epochs if settings.iterations is None else settings.iterations


def build_student(cfg: RunConfig, data: DataSplits, initial_weights: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The student and its spec; `initial_weights=False` (a resumed run, whose saved state
    holds the weights) leaves out a family's starting-weights options (`build_model`)."""
    options = {"in_channels": data.in_channels, "num_classes": data.num_classes, **cfg.model.options}
    spec = model_spec(cfg.model.family, cfg.model.depth, options)
    try:
        return build_model(spec["family"], spec["depth"], initial_weights=initial_weights, **spec["options"]), spec
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config key 'model': cannot build {cfg.model.family}-{cfg.model.depth} with options {cfg.model.options}: {err}") from None


def load_teacher(cfg: RunConfig, method: type[Method], student_spec: dict[str, Any], device: torch.device) -> nn.Module:
    teacher, state = load_model(cfg.method.teacher, "best", device)
    teacher_spec = state["spec"]
    for option in ("num_classes", "in_channels"):
        if teacher_spec["options"].get(option) != student_spec["options"].get(option):
            raise ConfigError(
                f"config key 'method.teacher': teacher {cfg.method.teacher} has {option} {teacher_spec['options'].get(option)}, "
                f"the data set {student_spec['options'].get(option)}"
            )
    if method.same_family_teacher and teacher_spec["family"] != student_spec["family"]:
        raise ConfigError(
            f"config key 'method.teacher': {cfg.method.name} needs a teacher of the student's family "
            f"({student_spec['family']}), got a {teacher_spec['family']} teacher"
        )
    return teacher


def load_teacher_extras(teacher: str) -> dict[str, Any] | None:
    """The modules a teacher run's method trained beside its model (a GAN's discriminator),
    from the teacher run's final training state; None for a bare checkpoint file."""
    state_path = Path(teacher) / "checkpoints" / "state.pt"
    if not state_path.is_file():
        return None
    return load_checkpoint(state_path, kind="train-state")["extra"]


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, resume: bool = False,
                 device_slot: dict[str, Any] | None = None) -> None:
        cfg = check_run_config(apply_tuned(cfg))  # tuned tau, alpha, beta first: config.yaml records the values used
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device_slot = device_slot  # `lit train --device-slots`: the slot this session holds (summary.json)
        self.state_path = self.run_dir / "checkpoints" / "state.pt"
        self.resuming = self.check_run_dir(resume)
        check_trackers(cfg.train.loggers)  # a tracker's missing package stops the run before any file is written
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.seed)
        # one process, or one rank of a data-parallel run under torchrun (its own GPU)
        processes = launched_processes()
        if cfg.train.batch_size < processes:
            raise ConfigError(f"config key 'train.batch_size': {cfg.train.batch_size} cannot be split over {processes} processes")
        self.group, device_setting = join(cfg.train.device)
        self.device = resolve_device(device_setting)
        self.dtype = resolve_precision(cfg.train, self.device)
        self.data = load_data(cfg.data)
        method_class = METHODS.get(cfg.method.name)
        self.student, self.spec = build_student(cfg, self.data, initial_weights=not self.resuming)
        teacher = load_teacher(cfg, method_class, self.spec, self.device) if method_class.needs_teacher else None
        # method.student_init: teacher_blocks; the map only when resuming (the weights are in the state)
        self.student_init = None
        if teacher is not None and "student_init" in method_class.uses and cfg.method.student_init == "teacher_blocks":
            try:
                self.student_init = init_from_teacher_blocks(
                    self.student, teacher, cfg.method.student_init_blocks, copy=not self.resuming)
            except ValueError as err:
                raise ConfigError(f"config key 'method.student_init': {err}") from None
        self.phases = [p for p in method_class.phases if phase_length(cfg.train.phases[p]) > 0]
        context = MethodContext(
            input_shape=self.data.input_shape,
            active_phases=tuple(self.phases),
            teacher_extras=load_teacher_extras(cfg.method.teacher) if teacher is not None else None,
            family=cfg.model.family,
            phase_epochs={p: cfg.train.phases[p].epochs for p in self.phases if cfg.train.phases[p].iterations is None},
            train_labels=self.data.train.labels,
        )
        try:
            self.method: Method = method_class(cfg.method, self.student, teacher, context)
        except ValueError as err:  # an architecture the method cannot pair (sections, shapes)
            raise ConfigError(f"method {cfg.method.name!r}: {err}") from None
        if teacher is not None:  # after the method read it: LIT copies its stem and head, FitNets sizes its regressor by its batch norms
            freeze_for_inference(teacher)
        self.memory_format = torch.contiguous_format
        if cfg.train.channels_last and self.data.kind == "image":
            self.memory_format = torch.channels_last
        for module in (self.student, teacher, self.method.extra_modules()):
            if module is not None:
                module.to(self.device, memory_format=self.memory_format)
        for module in (self.student, self.method.extra_modules()):  # every rank starts from rank 0's weights
            self.group.broadcast(module)
        if cfg.train.compile:
            for model in (self.student, teacher):
                if model is not None:
                    compile_sectioned(model, compile_mode(self.device))
        self.loader_rng = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.train_batches = Batches(
            self.data.train, self.data, cfg.train.batch_size, self.device, True, self.loader_rng, self.memory_format,
            method_class.image_scaling,
        )
        if len(self.train_batches) == 0:
            raise ConfigError(f"data set {cfg.data.name!r} gives an empty training split (data.options {cfg.data.options})")
        self.stream = BatchStream(self.train_batches) if any(cfg.train.phases[p].iterations is not None for p in self.phases) else None
        self.val_batches = Batches(
            self.data.val, self.data, cfg.train.eval_batch_size, self.device, False, memory_format=self.memory_format,
            scaling=method_class.image_scaling,
        )
        # the paper's protocol (best test epoch): the test split, scored after selection is done
        self.test_batches = Batches(
            self.data.test, self.data, cfg.train.eval_batch_size, self.device, False, memory_format=self.memory_format,
            scaling=method_class.image_scaling,
        ) if cfg.evaluate.test_every_epoch else None
        self.log = MetricsLog(self.run_dir / "metrics.jsonl")
        self.progress = Progress()
        # what training has cost so far, over every session of the run (kept in the state)
        self.cost = {"wall_seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": 0.0}
        self.cost_mark = (time.perf_counter(), time.process_time())
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.trackers = Trackers()  # train.loggers, opened by `run` on rank 0
        # written only now: a config that cannot build its data or models leaves no run directory
        if self.group.is_main:  # in a data-parallel run rank 0 writes every file
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
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "rng": rng_state(), "loader_rng": self.loader_rng.get_state(),
            "stream": self.stream.state_dict() if self.stream is not None else None,
            "cost": self.account(),
        }
        save_checkpoint(state, self.state_path)

    def restore_state(self) -> dict[str, Any]:
        state = load_checkpoint(self.state_path, map_location="cpu", kind="train-state")
        if "optimizers" not in state:
            raise CheckpointError(f"{self.state_path} was written by an older lit (no 'optimizers' entry): start the run anew")
        spec = state["spec"]
        if spec != self.spec:  # the method reshaped the student before this state was saved (slimming pruned it)
            self.student = build_model(spec["family"], spec["depth"], initial_weights=False, **spec["options"])
            self.spec = spec
            self.student.to(self.device, memory_format=self.memory_format)
            if self.cfg.train.compile:
                compile_sectioned(self.student, compile_mode(self.device))
            self.method.set_student(self.student)
        unwrap(self.student).load_state_dict(state["model"])
        self.method.extra_modules().load_state_dict(state["extra"])
        self.progress = Progress(**state["progress"])
        self.cost = {**self.cost, **state.get("cost", {})}
        set_rng_state(state["rng"])
        self.loader_rng.set_state(state["loader_rng"])
        if self.stream is not None and state["stream"] is not None:
            self.stream.load_state_dict(state["stream"])
        if self.group.is_main:
            self.log.truncate_after(epoch=self.progress.epoch, iteration=self.progress.iteration)
        return state

    def reshape_student(self, phase: str) -> None:
        """Let the method change the student's architecture as `phase` starts (slimming
        prunes it): the new spec goes into every later checkpoint, the new modules onto the
        device, and selection starts over, so `best.pt` is one of the reshaped models."""
        options = self.method.reshape_student(phase, self.spec["options"])
        if options is None:
            return
        self.student, self.spec = self.method.student, {**self.spec, "options": options}
        self.student.to(self.device, memory_format=self.memory_format)
        self.progress.best_val_acc = -1.0
        self.progress.reshaped_at_epoch = self.progress.epoch

    def account(self) -> dict[str, float]:
        """Add the wall and CPU time since the last call to the run's cost, and its peak memory."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.cost["wall_seconds"] += wall - self.cost_mark[0]
        self.cost["cpu_seconds"] += cpu - self.cost_mark[1]
        self.cost_mark = (wall, cpu)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        self.cost["peak_rss_mb"] = max(self.cost["peak_rss_mb"], peak)
        if self.device.type == "cuda":
            gpu_peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.cost["peak_gpu_mb"] = max(self.cost.get("peak_gpu_mb", 0.0), gpu_peak)
        return dict(self.cost)

    # ------------------------------------------------------------ the loop

    def run(self) -> dict[str, Any]:
        """Train every phase, with the trackers of train.loggers open throughout (closed at
        the end, also when the run fails)."""
        saved = self.restore_state() if self.resuming else None
        self.trackers = self.open_trackers()
        try:
            summary = self.run_phases(saved)
        except BaseException as err:
            self.trackers.close("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        self.trackers.close()
        return summary

    def open_trackers(self) -> Trackers:
        """The trackers of `train.loggers`, on rank 0 only. A resumed session logs from the
        step after the last record metrics.jsonl kept (TensorBoard drops what an
        interrupted session logged past it)."""
        if not self.group.is_main or not self.cfg.train.loggers:
            return Trackers()
        resume_step = None
        if self.resuming:
            records = self.log.records()
            resume_step = (record_step(records[-1]) or 0) + 1 if records else 1
        # the config as the run uses it (its method's phases only) as hyperparameters
        return Trackers(self.cfg.train.loggers, self.run_dir, effective_config(self.cfg).to_dict(), config_hash(self.cfg),
                        resume_step)

    def run_phases(self, saved: dict[str, Any] | None) -> dict[str, Any]:
        if not self.resuming and self.group.is_main:  # a fresh run starts a fresh log (a killed first epoch may have left one)
            self.log.path.unlink(missing_ok=True)
        started, self.started_at = time.perf_counter(), now()
        if self.group.is_main:  # where the run computes: the log says it first
            processes = f", {self.group.world_size} processes" if self.group.active else ""
            print(f"[{self.cfg.method.name}] device {self.device} ({device_name(self.device)}), "
                  f"{str(self.dtype).replace('torch.', '')}{processes}", file=sys.stderr, flush=True)
            if self.student_init is not None:
                print(f"[{self.cfg.method.name}] student init from teacher blocks ({self.cfg.method.student_init_blocks}), "
                      f"per section: {self.student_init}", file=sys.stderr, flush=True)
        for phase_index in range(self.progress.phase_index, len(self.phases)):
            phase = self.phases[phase_index]
            settings = self.cfg.train.phases[phase]
            resumed = saved is not None and phase_index == self.progress.phase_index
            if not resumed:  # a phase resumed inside was reshaped before its state was saved
                self.reshape_student(phase)
            self.optimizers = self.make_optimizers(settings, self.method.param_groups(phase))
            if resumed:
                for name, optimizer_state in saved["optimizers"].items():
                    self.optimizers[name].load_state_dict(optimizer_state)
            saved = None
            if self.progress.phase_index != phase_index:
                self.progress.phase_index, self.progress.epoch_in_phase, self.progress.iteration_in_phase = phase_index, 0, 0
            if settings.iterations is None:
                while self.progress.epoch_in_phase < settings.epochs:
                    self.end_epoch(self.train_epoch(phase, settings))
            else:
                self.train_iterations(phase, settings)
        return self.finish(time.perf_counter() - started)

    def make_optimizers(self, settings: PhaseConfig, groups: dict[str, list[nn.Parameter]]) -> dict[str, torch.optim.Optimizer]:
        return {name: self.make_optimizer(settings, params, self.base_lr(settings, name)) for name, params in groups.items()}

    def make_optimizer(self, settings: PhaseConfig, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        if settings.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, betas=tuple(settings.betas), weight_decay=settings.weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=settings.momentum, nesterov=settings.nesterov, weight_decay=settings.weight_decay)

    def base_lr(self, settings: PhaseConfig, group: str) -> float:
        reference = self.cfg.train.lr_reference_batch
        return settings.group_lr.get(group, settings.lr) * (self.cfg.train.batch_size / reference if reference else 1.0)

    def set_learning_rates(self, settings: PhaseConfig, epoch: int, step: int, steps: int) -> dict[str, float]:
        lrs = {}
        for name, optimizer in self.optimizers.items():
            lrs[name] = learning_rate(settings, self.base_lr(settings, name), epoch, step, steps)
            for group in optimizer.param_groups:
                group["lr"] = lrs[name]
        return lrs

    def train_step(self, step: Step, inputs: torch.Tensor, labels: torch.Tensor, meter: Meter, check: bool) -> None:
        """The method's updates of one batch, each applied before the next is computed
        (a generator step sees the discriminator this batch already moved). In a
        data-parallel run each rank computes its slice of the batch, and the gradients of
        every update are the whole batch's before its optimiser steps."""
        total = len(labels)
        inputs, labels = self.group.shard(inputs), self.group.shard(labels)
        if step.indices is not None:
            step = replace(step, indices=self.group.shard(step.indices))
        updates = self.method.updates(step, inputs, labels)
        while True:
            with autocast(self.device, self.dtype):
                update = next(updates, None)
            if update is None:
                break
            loss = sum(update.terms.values())
            optimizer = self.optimizers[update.group]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            loss = self.group.average_gradients(parameters, len(labels), total, loss)
            optimizer.step()
            meter.add(update, labels)
            if check:
                self.check_finite(loss, update.terms, step)
        meter.images += len(labels)

    def train_epoch(self, phase: str, settings: PhaseConfig) -> dict[str, Any]:
        self.method.train_mode()
        steps, epoch = len(self.train_batches), self.progress.epoch_in_phase
        meter = Meter(self.device)
        batches = self.train_batches.indexed()
        for index, (rows, inputs, labels) in enumerate(self.progress_bar(batches, f"{phase} epoch {epoch + 1}", steps)):
            lrs = self.set_learning_rates(settings, epoch, index, steps)
            step = Step(phase, epoch * steps + index, (epoch + index / steps) / max(settings.epochs, 1), self.loader_rng, rows)
            self.train_step(step, inputs, labels, meter, self.should_check(index, steps))
        return {**meter.record(phase, lrs, self.group), "phase_epoch": epoch + 1}

    def train_iterations(self, phase: str, settings: PhaseConfig) -> None:
        """Iterations until the phase ends, a record every `log_every`, validation and a
        checkpoint every `checkpoint_every` and at the end of the phase."""
        self.method.train_mode()
        total, progress, train = settings.iterations, self.progress, self.cfg.train
        meter = Meter(self.device)
        for index in self.progress_bar(range(progress.iteration_in_phase, total), phase, total, progress.iteration_in_phase):
            lrs = self.set_learning_rates(settings, 0, index, total)
            rows, inputs, labels = self.stream.next()
            step = Step(phase, index, index / total, self.loader_rng, rows)
            self.train_step(step, inputs, labels, meter, self.should_check(index, total))
            progress.iteration_in_phase, progress.iteration = index + 1, progress.iteration + 1
            done = index + 1
            checkpoint = done % train.checkpoint_every == 0 or done == total
            if done % train.log_every == 0 or checkpoint:
                record = {**meter.record(phase, lrs, self.group), "phase_iteration": done, "iteration": progress.iteration}
                meter = Meter(self.device)
                if checkpoint:
                    self.end_interval(record)
                elif self.group.is_main:
                    self.log.append(record)
                    self.trackers.log(record)

    def should_check(self, index: int, steps: int) -> bool:
        """Whether to test this step's loss for NaN: every step on a CPU; on a GPU (where the
        test waits for the device) every 25th and the last."""
        return self.device.type == "cpu" or index % 25 == 0 or index == steps - 1

    def check_finite(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], step: Step) -> None:
        if not torch.isfinite(loss.detach()).item():
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            settings = self.cfg.train.phases[step.phase]
            if settings.iterations is None:
                where = f"epoch {self.progress.epoch_in_phase + 1}, step {step.index % len(self.train_batches)}"
            else:
                where = f"iteration {step.index + 1}"
            raise TrainingDiverged(
                f"loss became {loss.item()} in phase {step.phase!r}, {where} ({values}); the run stopped and its last "
                "complete checkpoint is kept. Lower the learning rate or use train.precision=fp32."
            )

    def progress_bar(self, items: Iterable, description: str, total: int, initial: int = 0) -> Iterable:
        wanted = self.cfg.train.progress
        if wanted == "off" or (wanted == "auto" and not sys.stderr.isatty()):
            return items
        from tqdm import tqdm

        return tqdm(items, desc=description, total=total, initial=initial, leave=False, file=sys.stderr)

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.progress.epoch += 1
        self.progress.epoch_in_phase += 1
        self.end_interval({**record, "epoch": self.progress.epoch})

    def end_interval(self, record: dict[str, Any]) -> None:
        """Validate and select, write best.pt and last.pt, score the test split where the
        oracle is on (after selection: nothing selected can depend on it), then write the
        record and the state."""
        progress, checkpoints = self.progress, self.run_dir / "checkpoints"
        position = {"epoch": record.get("epoch", progress.epoch), "iteration": progress.iteration}
        # a data-parallel run: rank 0's batch-norm statistics on every rank, so that all ranks
        # validate, select and go on with one model
        for module in (self.student, self.method.extra_modules()):
            self.group.broadcast(module)
        if self.method.selects_on_validation and len(self.data.val) > 0:
            val_acc, val_loss = accuracy(self.student, self.val_batches, self.device, self.dtype)
            record.update(val_acc=val_acc, val_loss=val_loss)
        saves = []
        if self.selects_best_on_validation:
            if record["val_acc"] > progress.best_val_acc:
                progress.best_val_acc, progress.best_epoch = record["val_acc"], progress.epoch
                saves.append("best.pt")
        else:  # selection `last`, or nothing to select on (a generator): the model so far is the one to use
            progress.best_epoch = progress.epoch
            saves.append("best.pt")
        if self.test_batches is not None:
            # in fp32, as `lit evaluate` scores best.pt and last.pt: the oracle's last epoch is test_acc_last
            record["test_acc"], record["test_loss"] = accuracy(self.student, self.test_batches, self.device, torch.float32)
        if not self.group.is_main:
            return
        for name in (*saves, "last.pt"):
            save_model(self.student, self.spec, checkpoints / name, val_acc=record.get("val_acc"), **position)
        # the record before the state: a run killed between the two redoes this interval (and
        # truncates its record) instead of resuming past one that was never logged
        self.log.append(record)
        self.trackers.log(record)
        self.save_state()
        print(self.status_line(record), file=sys.stderr, flush=True)

    @property
    def selects_best_on_validation(self) -> bool:
        return self.method.selects_on_validation and self.cfg.train.selection == "val"

    def status_line(self, record: dict[str, Any]) -> str:
        if "phase_epoch" in record:
            where = f"epoch {record['epoch']} ({record['phase']} {record['phase_epoch']})"
        else:
            where = f"iteration {record['iteration']} ({record['phase']} {record['phase_iteration']})"
        scores = "".join(f" {key} {record[key]:.4f}" for key in ("train_acc", "val_acc") if key in record)
        return f"[{self.cfg.method.name}] {where}: loss {record['loss']:.4f}{scores} lr {record['lr']:.4g} {record['images_per_s']:.0f} img/s"

    def finish(self, seconds: float) -> dict[str, Any]:
        if not self.group.is_main:  # rank 0 writes the summary
            return {"status": "complete", "rank": self.group.rank}
        records = self.log.records()
        selects = self.selects_best_on_validation
        summary = {
            "status": "complete", "method": self.cfg.method.name, "family": self.cfg.model.family,
            "depth": self.cfg.model.depth, "seed": self.cfg.seed, "data": self.cfg.data.name,
            "epochs": self.progress.epoch, "iterations": self.progress.iteration,
            "selection": self.cfg.train.selection if self.method.selects_on_validation else None,
            "best_epoch": self.progress.best_epoch if selects else None,
            "best_val_acc": self.progress.best_val_acc if selects else None,
            "last_val_acc": records[-1].get("val_acc") if records else None,
            "last_metrics": records[-1] if records else {},
            "params": count_parameters(self.student),
            "mean_images_per_s": sum(r["images_per_s"] for r in records) / max(len(records), 1),
            "device": str(self.device), "precision": str(self.dtype).replace("torch.", ""),
            "device_slot": self.device_slot,
            # method.student_init: teacher_blocks: per section, per student block, the teacher block it started from
            "student_init": None if self.student_init is None else {
                "blocks": self.cfg.method.student_init_blocks, "teacher_block_per_student_block": self.student_init},
            "processes": self.group.world_size,  # > 1: data-parallel over torchrun's processes (costs: rank 0's)
            "seconds_this_session": seconds,
            "training_cost": self.account(),  # every session's wall and CPU seconds, peak memory
            "provenance": provenance(self.device, precision=str(self.dtype).replace("torch.", ""),
                                     started=self.started_at, finished=now()),
        }
        # the oracle: the paper's "best test accuracy over all epochs" (first epoch on a tie), of
        # the model the run reports (after a reshape, of the reshaped model's epochs only)
        tested = [r for r in records if "test_acc" in r and r.get("epoch", 0) > self.progress.reshaped_at_epoch]
        if tested:
            best = max(tested, key=lambda r: r["test_acc"])
            summary.update(oracle_test_acc=best["test_acc"], oracle_epoch=best.get("epoch"))
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


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False,
          device_slot: dict[str, Any] | None = None) -> dict[str, Any]:
    trainer = Trainer(cfg, run_dir, resume, device_slot)
    try:
        return trainer.run()
    finally:
        leave(trainer.group)
