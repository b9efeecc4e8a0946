"""StarGAN teacher training, LIT distillation of a smaller generator, and its evaluation.

Three entry points, each reading and writing one run directory:

- `train_gan(settings, run_dir)`: the teacher GAN (CVPR 2018). WGAN-GP adversarial
  loss (lambda_gp), domain classification by BCE on the attribute logits (lambda_cls),
  cycle reconstruction by L1 (lambda_rec); Adam for G and D; G updated after every
  `n_critic`-th D step; target labels are the batch's own labels in a random order (as the
  official code); images in [-1, 1]. The learning rates decay linearly to zero from
  `decay_start` to the last iteration, as the paper states (200k iterations, decay over
  the last 100k; the official code subtracts lr / 100k only every 1000 iterations, which
  in all removes a thousandth of the rate).
- `distill_generator_lit(teacher, student_depth, settings, run_dir)`: LIT for the
  generator, as the official code: beta = 0, so the only loss is the MSE between each
  student residual section fed the TEACHER's input to that section and the teacher's
  output of it (`teacher_fed_section_mse`), summed over sections. The student's stem
  (down-sampling) and head (up-sampling) are copies of the teacher's and stay frozen; its
  residual blocks start from a fresh initialisation; the teacher runs in eval mode under
  `no_grad`. The official code effectively never fine-tunes the generator afterwards (a
  bug), so by default neither does this; `finetune_iterations > 0` adds WGAN-GP training of
  the student's sections (stem and head still frozen) against the teacher's discriminator,
  which keeps training too, with the teacher GAN's losses and weights, fresh Adam states
  and constant learning rates. LIT distils on random target domains, as G is trained.
- `evaluate_generator_run(run_dir)`: params, FLOPs, CPU latency at batch 1 (the keys of the
  classifiers' `eval.json`: `params`, `flops`, `macs`, `speed.cpu.latency_ms_batch1`), FID by
  the translation protocol of `lit.evaluate.fid`, and a sample grid: `eval.json`,
  `samples.png`.

Run directory: `config.json` (the resolved settings; a resume must match it),
`checkpoints/last.pt` (the whole training state, atomic, every `checkpoint_every`
iterations and at the end: weights, Adam states, iteration, RNG states including the
`torch.Generator` that draws every batch, flip, target-label order and gradient-penalty
mix), `checkpoints/generator.pt` (the final generator as a `lit` model checkpoint, which
`lit.models.io.load_model` rebuilds), `metrics.jsonl` and `summary.json`. All
randomness after model initialisation comes from that generator, so `resume=True` ends
with the same weights, bit for bit on CPU, as an uninterrupted run. Training is fp32.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from lit.config import ConfigError
from lit.data import DataSplits, build_data
from lit.data.celeba import HAIR_COLOURS
from lit.data.colordigits import COLOUR_NAMES
from lit.data.loader import random_flip
from lit.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lit.runtime.device import resolve_device
from lit.models.io import load_model, model_spec, save_model
from lit.runtime.runlog import MetricsLog, read_json, write_json
from lit.runtime.seeding import rng_state, seed_everything, set_rng_state
from lit.evaluate.cost import count_flops, count_parameters, time_call
from lit.methods.losses import teacher_fed_section_mse
from lit.models import build_model
from lit.models.stargan import StarGANDiscriminator, StarGANGenerator

STATE_KIND = "gan-state"
FID_SUBSET_SEED = 0  # the test images scored by FID: the same for every run
EXCLUSIVE_GROUPS = (HAIR_COLOURS, COLOUR_NAMES)  # attributes of which an image has exactly one


@dataclass
class GANSettings:
    """Everything a StarGAN run needs; defaults are the paper's CelebA settings."""

    data: str = "celeba"  # a registered data set with (N, c_dim) attribute labels
    data_root: str = "data"
    data_options: dict[str, Any] = field(default_factory=dict)  # the data set's own options
    download: bool = False
    depth: int = 6  # residual blocks of the (teacher) generator: repeat_num
    conv_dim: int = 64  # generator width; the bottleneck has 4 * conv_dim channels
    num_sections: int = 1  # LIT split points: the residual blocks in this many groups
    d_conv_dim: int = 64
    d_repeat_num: int | None = None  # None: down to a 2x2 map (6 at 128 px)
    iterations: int = 200_000  # teacher: all of training; LIT: the LIT phase
    batch_size: int = 16
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 5  # D steps per G step
    lambda_gp: float = 10.0
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    decay_start: int | None = None  # iteration where linear lr decay begins; None: half-way (paper: 100k of 200k)
    finetune_iterations: int = 0  # LIT only: adversarial fine-tuning after the LIT phase (0: off, as the official code)
    checkpoint_every: int = 1000
    log_every: int = 100
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    fid_images: int | None = None  # evaluation: test images translated for FID (None: all)
    fid_batch_size: int = 50
    fid_weights: str = "torchscript"  # torchscript (offline, shipped) | pytorch-fid (downloads)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GANSettings":
        hints = typing.get_type_hints(cls)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown GAN setting {unknown[0]!r} (known: {', '.join(known)})")
        settings = cls(**{key: checked_value(key, value, hints[key]) for key, value in values.items()})
        settings.validate()
        return settings

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        at_least = {
            "depth": 1,
            "conv_dim": 1,
            "num_sections": 1,
            "d_conv_dim": 1,
            "iterations": 0,
            "batch_size": 2,
            "n_critic": 1,
            "finetune_iterations": 0,
            "checkpoint_every": 1,
            "log_every": 1,
            "fid_batch_size": 1,
        }
        for key, minimum in at_least.items():
            if getattr(self, key) < minimum:
                raise ConfigError(f"GAN setting {key!r} must be at least {minimum}, got {getattr(self, key)}")
        for key in ("lr_g", "lr_d"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"GAN setting {key!r} must be positive, got {getattr(self, key)}")
        if self.decay_start is not None and not 0 <= self.decay_start <= self.iterations:
            raise ConfigError(f"GAN setting 'decay_start' must be in [0, iterations={self.iterations}], got {self.decay_start}")
        if self.fid_weights not in ("torchscript", "pytorch-fid"):
            raise ConfigError(f"GAN setting 'fid_weights' must be 'torchscript' or 'pytorch-fid', got {self.fid_weights!r}")


def checked_value(key: str, value: Any, expected: Any) -> Any:
    """`value` as the annotated type (int | None, float, dict, ...), or a ConfigError naming `key`."""
    is_union = typing.get_origin(expected) in (typing.Union, types.UnionType)
    options = typing.get_args(expected) if is_union else (expected,)
    if value is None and type(None) in options:
        return None
    for option in options:
        option = typing.get_origin(option) or option
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option in (int, str, bool, dict) and isinstance(value, option) and not (option is int and isinstance(value, bool)):
            return value
    names = " or ".join(getattr(typing.get_origin(o) or o, "__name__", str(o)).replace("NoneType", "null") for o in options)
    raise ConfigError(f"GAN setting {key!r}: expected {names}, got {value!r}")


def as_settings(settings: GANSettings | dict[str, Any]) -> GANSettings:
    if isinstance(settings, GANSettings):
        settings.validate()
        return settings
    return GANSettings.from_dict(dict(settings))


# ----------------------------------------------------------------------------- data and models


def load_gan_data(settings: GANSettings) -> DataSplits:
    """All of the training split trains (a GAN has no validation-based selection)."""
    data = build_data(
        settings.data,
        settings.data_root,
        val_fraction=0.0,
        seed=settings.seed,
        download=settings.download,
        **settings.data_options,
    )
    if data.kind != "image" or data.train.labels.dim() != 2:
        raise ConfigError(
            f"GAN setting 'data': {settings.data!r} has no (N, c_dim) attribute labels; StarGAN needs multi-domain images"
        )
    height, width = data.input_shape[1:]
    if height != width or height % 4:
        raise ConfigError(
            f"GAN setting 'data': StarGAN needs square images with a side divisible by 4, {settings.data!r} has {height}x{width}"
        )
    return data


def generator_spec(settings: GANSettings, data: DataSplits, depth: int) -> dict[str, Any]:
    options = {
        "in_channels": data.in_channels,
        "num_classes": data.num_classes,
        "conv_dim": settings.conv_dim,
        "num_sections": settings.num_sections,
    }
    return model_spec("stargan", depth, options)


def discriminator_spec(settings: GANSettings, data: DataSplits) -> dict[str, Any]:
    return {
        "image_size": data.input_shape[-1],
        "conv_dim": settings.d_conv_dim,
        "c_dim": data.num_classes,
        "repeat_num": settings.d_repeat_num,
        "image_channels": data.in_channels,
    }


def adam(params: Any, lr: float, settings: GANSettings) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(settings.beta1, settings.beta2))


def decayed_lr(base_lr: float, iteration: int, total: int, decay_start: int | None) -> float:
    """Constant, then linear to zero over [decay_start, total) (a pure function of the step)."""
    start = total // 2 if decay_start is None else decay_start
    if iteration < start or total <= start:
        return base_lr
    return base_lr * (total - iteration) / (total - start)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class ImageBatches:
    """Endless random batches of (images in [-1, 1], labels) from one split held on the
    device: every epoch a new order, incomplete last batches dropped. `rng` also draws the
    flips, the target-label order and the gradient-penalty mix, so its state, the epoch's
    order and the cursor are the whole of the data's state."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, flip: bool, device: torch.device, seed: int
    ) -> None:
        if len(labels) < batch_size:
            raise ConfigError(f"GAN setting 'batch_size' ({batch_size}) exceeds the {len(labels)} training images")
        self.images, self.labels = images.to(device), labels.float().to(device)
        self.batch_size, self.flip = batch_size, flip
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.order = torch.randperm(len(labels), generator=self.rng, device=device)
        self.cursor = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cursor + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.order), generator=self.rng, device=self.order.device)
            self.cursor = 0
        index = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        images = self.images[index].float() / 127.5 - 1.0
        return (random_flip(images, self.rng) if self.flip else images), self.labels[index]

    def shuffled_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Target domains: the batch's own labels in a random order (official StarGAN)."""
        return labels[torch.randperm(len(labels), generator=self.rng, device=labels.device)]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.get_state(), "order": self.order.cpu(), "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.set_state(state["rng"])
        self.order = state["order"].to(self.order.device)
        self.cursor = int(state["cursor"])


# ----------------------------------------------------------------------------- the StarGAN losses


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE on attribute logits, summed over attributes, mean over the batch (official)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad_x D(x_hat)||_2 - 1)^2 at random mixes x_hat."""
    alpha = torch.rand(len(real), 1, 1, 1, generator=rng, device=real.device)
    mixed = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    critic, _ = discriminator(mixed)
    (gradient,) = torch.autograd.grad(critic, mixed, torch.ones_like(critic), create_graph=True)
    return ((gradient.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


@dataclass
class Adversary:
    """The two players and their optimisers, with the loss weights."""

    generator: StarGANGenerator
    discriminator: StarGANDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    settings: GANSettings


def discriminator_step(
    game: Adversary, real: torch.Tensor, label_org: torch.Tensor, label_trg: torch.Tensor, rng: torch.Generator
) -> dict[str, torch.Tensor]:
    s, D = game.settings, game.discriminator
    critic_real, logits_real = D(real)
    with torch.no_grad():
        fake = game.generator(real, label_trg)
    critic_fake, _ = D(fake)
    terms = {
        "D/loss_real": -critic_real.mean(),
        "D/loss_fake": critic_fake.mean(),
        "D/loss_cls": classification_loss(logits_real, label_org),
        "D/loss_gp": gradient_penalty(D, real, fake, rng),
    }
    loss = terms["D/loss_real"] + terms["D/loss_fake"] + s.lambda_cls * terms["D/loss_cls"] + s.lambda_gp * terms["D/loss_gp"]
    game.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    game.opt_d.step()
    return {name: value.detach() for name, value in terms.items()}


def generator_step(
    game: Adversary, real: torch.Tensor, label_org: torch.Tensor, label_trg: torch.Tensor
) -> dict[str, torch.Tensor]:
    s, G = game.settings, game.generator
    fake = G(real, label_trg)
    critic_fake, logits_fake = game.discriminator(fake)
    terms = {
        "G/loss_fake": -critic_fake.mean(),
        "G/loss_cls": classification_loss(logits_fake, label_trg),
        "G/loss_rec": (real - G(fake, label_org)).abs().mean(),  # cycle back to the source domain
    }
    loss = terms["G/loss_fake"] + s.lambda_rec * terms["G/loss_rec"] + s.lambda_cls * terms["G/loss_cls"]
    game.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    game.opt_g.step()
    return {name: value.detach() for name, value in terms.items()}


def adversarial_iteration(
    game: Adversary, batches: ImageBatches, step_in_phase: int, total: int, decay_start: int | None
) -> dict[str, Any]:
    """One D step, and a G step after every `n_critic`-th D step (official order)."""
    s = game.settings
    lr_g, lr_d = decayed_lr(s.lr_g, step_in_phase, total, decay_start), decayed_lr(s.lr_d, step_in_phase, total, decay_start)
    set_lr(game.opt_g, lr_g)
    set_lr(game.opt_d, lr_d)
    real, label_org = batches.next()
    label_trg = batches.shuffled_labels(label_org)
    record: dict[str, Any] = {"lr_g": lr_g, "lr_d": lr_d, **discriminator_step(game, real, label_org, label_trg, batches.rng)}
    if (step_in_phase + 1) % s.n_critic == 0:
        record.update(generator_step(game, real, label_org, label_trg))
    return record


# ----------------------------------------------------------------------------- run directories and the loop


@dataclass
class Job:
    """One run: what its checkpoint holds and how one iteration advances it."""

    name: str  # "stargan-teacher" or "stargan-lit"
    settings: GANSettings
    run_dir: Path
    generator: StarGANGenerator  # the generator this run produces
    spec: dict[str, Any]  # its model spec
    modules: dict[str, nn.Module]  # saved and restored by name
    optimizers: dict[str, torch.optim.Optimizer]
    batches: ImageBatches
    total: int
    step: Callable[[int], dict[str, Any]]  # iteration -> logged values, with the "phase" they belong to
    extra_state: dict[str, Any] = field(default_factory=dict)  # written into every checkpoint (e.g. D's spec)

    @property
    def state_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"


def prepare_run_dir(run_dir: str | Path, config: dict[str, Any], resume: bool) -> tuple[Path, bool]:
    """Create the run directory and its config.json; returns (path, whether to resume).
    A fresh run refuses a directory with a training state; a resume refuses another config."""
    run_dir = Path(run_dir)
    state_path, config_path = run_dir / "checkpoints" / "last.pt", run_dir / "config.json"
    if state_path.exists() and not resume:
        raise ConfigError(f"run directory {run_dir} already holds a training state: resume it, or choose a new run directory")
    if resume and config_path.exists():
        saved = read_json(config_path)
        differing = sorted(key for key in set(saved) | set(config) if saved.get(key) != config.get(key))
        if differing:
            raise ConfigError(f"cannot resume {run_dir}: its config differs in {', '.join(differing)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_path, config)
    return run_dir, resume and state_path.exists()


def save_state(job: Job, iteration: int, latest: dict[str, Any]) -> None:
    state = {
        "format": "lit-checkpoint/1",
        "kind": STATE_KIND,
        "job": job.name,
        "iteration": iteration,
        "spec": job.spec,
        "modules": {name: module.state_dict() for name, module in job.modules.items()},
        "optimizers": {name: optimizer.state_dict() for name, optimizer in job.optimizers.items()},
        "batches": job.batches.state_dict(),
        "rng": rng_state(),
        "latest": plain_values(latest),
        "settings": job.settings.to_dict(),
        **job.extra_state,
    }
    save_checkpoint(state, job.state_path)


def restore_state(job: Job) -> tuple[int, dict[str, Any]]:
    state = load_checkpoint(job.state_path, kind=STATE_KIND)
    if state["job"] != job.name:
        raise CheckpointError(f"{job.state_path} holds a {state['job']!r} run, not a {job.name!r} run")
    for name, module in job.modules.items():
        module.load_state_dict(state["modules"][name])
    for name, optimizer in job.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    job.batches.load_state_dict(state["batches"])
    set_rng_state(state["rng"])
    return int(state["iteration"]), dict(state["latest"])


def plain_values(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value.item() if isinstance(value, torch.Tensor) else value for key, value in record.items()}


def run_job(job: Job, resuming: bool) -> dict[str, Any]:
    """Iterate to `job.total`, logging every `log_every` and checkpointing every
    `checkpoint_every` iterations and at the end; then the final generator and summary."""
    s = job.settings
    start, latest = restore_state(job) if resuming else (0, {})
    log = MetricsLog(job.run_dir / "metrics.jsonl")
    log.truncate_after(start, key="iteration")  # lines a killed run wrote after its checkpoint are redone
    started = time.perf_counter()
    for iteration in range(start, job.total):
        record = job.step(iteration)
        if record["phase"] != latest.get("phase"):
            latest = {}  # a new phase logs its own losses only
        latest.update(record)
        done = iteration + 1
        if done % s.log_every == 0 or done == job.total:
            log.append({"iteration": done, **plain_values(latest), "elapsed_s": time.perf_counter() - started})
        if done % s.checkpoint_every == 0 or done == job.total:
            save_state(job, done, latest)
    seconds = time.perf_counter() - started
    save_model(job.generator, job.spec, job.run_dir / "checkpoints" / "generator.pt", iteration=job.total)
    summary = {
        "status": "complete",
        "job": job.name,
        "family": "stargan",
        "depth": job.spec["depth"],
        "data": s.data,
        "seed": s.seed,
        "iterations": job.total,
        "params": count_parameters(job.generator),
        "last_metrics": plain_values(latest),
        "seconds_this_session": seconds,
        "seconds_per_iteration": seconds / max(job.total - start, 1),
        "device": str(job.batches.images.device),
    }
    write_json(job.run_dir / "summary.json", summary)
    return summary


# ----------------------------------------------------------------------------- the teacher


def train_gan(settings: GANSettings | dict[str, Any], run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train a StarGAN teacher into `run_dir`; returns the summary."""
    s = as_settings(settings)
    run_dir, resuming = prepare_run_dir(run_dir, {"job": "stargan-teacher", "settings": s.to_dict()}, resume)
    seed_everything(s.seed)
    device = resolve_device(s.device)
    data = load_gan_data(s)
    spec, d_spec = generator_spec(s, data, s.depth), discriminator_spec(s, data)
    generator = build_model(spec["family"], spec["depth"], **spec["options"]).to(device)
    discriminator = StarGANDiscriminator(**d_spec).to(device)
    game = Adversary(
        generator, discriminator, adam(generator.parameters(), s.lr_g, s), adam(discriminator.parameters(), s.lr_d, s), s
    )
    batches = ImageBatches(data.train.inputs, data.train.labels, s.batch_size, data.augment.flip, device, s.seed)
    job = Job(
        name="stargan-teacher",
        settings=s,
        run_dir=run_dir,
        generator=generator,
        spec=spec,
        modules={"generator": generator, "discriminator": discriminator},
        optimizers={"generator": game.opt_g, "discriminator": game.opt_d},
        batches=batches,
        total=s.iterations,
        step=lambda iteration: {"phase": "gan", **adversarial_iteration(game, batches, iteration, s.iterations, s.decay_start)},
        extra_state={"discriminator_spec": d_spec},
    )
    return run_job(job, resuming)


# ----------------------------------------------------------------------------- LIT for the generator


def load_teacher_gan(
    path: str | Path, device: torch.device
) -> tuple[StarGANGenerator, StarGANDiscriminator | None, dict[str, Any], dict[str, Any] | None]:
    """(generator, discriminator or None, generator spec, discriminator spec or None) from a
    finished teacher run directory, its `last.pt`, or a generator model checkpoint."""
    path = Path(path)
    file = path / "checkpoints" / "last.pt" if path.is_dir() else path
    state = load_checkpoint(file)
    if state.get("kind") == "model":
        generator, _ = load_model(file, device=device)
        return generator, None, state["spec"], None
    if state.get("kind") != STATE_KIND or state.get("job") != "stargan-teacher":
        raise CheckpointError(f"{file} is neither a StarGAN teacher run's state nor a generator checkpoint")
    if state["iteration"] != state["settings"]["iterations"]:
        raise CheckpointError(
            f"teacher run {file} is unfinished (iteration {state['iteration']} of {state['settings']['iterations']}): resume it first"
        )
    spec, d_spec = state["spec"], state["discriminator_spec"]
    generator = build_model(spec["family"], spec["depth"], **spec["options"])
    generator.load_state_dict(state["modules"]["generator"])
    discriminator = StarGANDiscriminator(**d_spec)
    discriminator.load_state_dict(state["modules"]["discriminator"])
    return generator.to(device), discriminator.to(device), spec, d_spec


def copy_and_freeze_stem_head(student: StarGANGenerator, teacher: StarGANGenerator) -> None:
    """The student's down- and up-sampling are the teacher's, frozen (LIT for generators)."""
    student.stem.load_state_dict(teacher.stem.state_dict())
    student.head.load_state_dict(teacher.head.state_dict())
    student.stem.requires_grad_(False)
    student.head.requires_grad_(False)


def lit_step(
    student: StarGANGenerator,
    teacher: StarGANGenerator,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """One LIT update (beta = 0): student section i is fed the teacher's features[i] and
    regressed onto the teacher's features[i + 1]; the loss is the sum over sections."""
    with torch.no_grad():
        teacher_feats = teacher.features(images, labels)
    section_mse = teacher_fed_section_mse(student.sections, teacher_feats)
    loss = torch.stack(section_mse).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"lit/loss": loss.detach(), **{f"lit/section{i}_mse": mse.detach() for i, mse in enumerate(section_mse)}}


def lit_iteration(
    student: StarGANGenerator,
    teacher: StarGANGenerator,
    optimizer: torch.optim.Optimizer,
    batches: ImageBatches,
    iteration: int,
    s: GANSettings,
) -> dict[str, Any]:
    lr = decayed_lr(s.lr_g, iteration, s.iterations, s.decay_start)
    set_lr(optimizer, lr)
    images, label_org = batches.next()
    # the teacher is distilled on the translations it was trained to make: random target domains
    return {"phase": "lit", "lr_g": lr, **lit_step(student, teacher, optimizer, images, batches.shuffled_labels(label_org))}


def build_student(
    teacher_spec: dict[str, Any], student_depth: int, data: DataSplits, device: torch.device
) -> tuple[StarGANGenerator, dict[str, Any]]:
    options = teacher_spec["options"]
    if (options["num_classes"], options["in_channels"]) != (data.num_classes, data.in_channels):
        raise ConfigError(
            f"GAN setting 'data': the teacher translates {options['in_channels']}-channel images between {options['num_classes']} "
            f"attributes, the data set has {data.in_channels} channels and {data.num_classes} attributes"
        )
    spec = model_spec("stargan", student_depth, options)
    try:
        student = build_model(spec["family"], spec["depth"], **spec["options"])
    except ValueError as err:
        raise ConfigError(f"student_depth {student_depth}: {err}") from None
    return student.to(device), spec


def distill_generator_lit(
    teacher_ckpt: str | Path,
    student_depth: int,
    settings: GANSettings | dict[str, Any],
    run_dir: str | Path,
    resume: bool = False,
) -> dict[str, Any]:
    """LIT-distil a StarGAN generator with `student_depth` residual blocks into `run_dir`
    (see the module docstring); `teacher_ckpt` is a teacher run directory or checkpoint.
    The architecture (width, sections, discriminator) is the teacher's; `settings` give the
    data, the optimisation (`iterations` of LIT, then `finetune_iterations`) and the seed."""
    s = as_settings(settings)
    config = {"job": "stargan-lit", "teacher": str(teacher_ckpt), "student_depth": student_depth, "settings": s.to_dict()}
    run_dir, resuming = prepare_run_dir(run_dir, config, resume)
    seed_everything(s.seed)
    device = resolve_device(s.device)
    teacher, discriminator, teacher_spec, d_spec = load_teacher_gan(teacher_ckpt, device)
    teacher.eval().requires_grad_(False)
    data = load_gan_data(s)
    student, spec = build_student(teacher_spec, student_depth, data, device)
    copy_and_freeze_stem_head(student, teacher)
    batches = ImageBatches(data.train.inputs, data.train.labels, s.batch_size, data.augment.flip, device, s.seed)
    lit_optimizer = adam(student.sections.parameters(), s.lr_g, s)
    game = finetune_game(student, discriminator, s, teacher_ckpt)

    def step(iteration: int) -> dict[str, Any]:
        if iteration < s.iterations:
            return lit_iteration(student, teacher, lit_optimizer, batches, iteration, s)
        # fine-tuning keeps constant learning rates (its decay would start at its end)
        finetune_step = iteration - s.iterations
        return {
            "phase": "finetune",
            **adversarial_iteration(game, batches, finetune_step, s.finetune_iterations, s.finetune_iterations),
        }

    modules: dict[str, nn.Module] = {"student": student}
    optimizers = {"lit": lit_optimizer}
    if game is not None:
        modules["discriminator"], optimizers["finetune_g"], optimizers["finetune_d"] = discriminator, game.opt_g, game.opt_d
    total = s.iterations + s.finetune_iterations
    extra_state = {"teacher": str(teacher_ckpt), "discriminator_spec": d_spec}
    job = Job("stargan-lit", s, run_dir, student, spec, modules, optimizers, batches, total, step, extra_state)
    return run_job(job, resuming)


def finetune_game(
    student: StarGANGenerator, discriminator: StarGANDiscriminator | None, s: GANSettings, teacher_ckpt: str | Path
) -> Adversary | None:
    """The student's sections against the teacher's discriminator (fresh Adam states), or
    None when fine-tuning is off; stem and head stay frozen as in the LIT phase."""
    if not s.finetune_iterations:
        return None
    if discriminator is None:
        raise ConfigError(
            f"GAN setting 'finetune_iterations' needs the teacher's discriminator: pass the teacher's run directory, not {teacher_ckpt}"
        )
    opt_g = adam(student.sections.parameters(), s.lr_g, s)
    return Adversary(student, discriminator, opt_g, adam(discriminator.parameters(), s.lr_d, s), s)


# ----------------------------------------------------------------------------- evaluation


def exclusive_attributes(class_names: list[str] | None) -> list[int]:
    """Indices of the mutually exclusive attribute group (hair colours, digit colours), or none."""
    names = class_names or []
    for group in EXCLUSIVE_GROUPS:
        members = [index for index, name in enumerate(names) if name in group]
        if len(members) >= 2:
            return members
    return []


def generator_cost(generator: StarGANGenerator, image_shape: tuple[int, ...], latency_runs: int) -> dict[str, Any]:
    """Parameters, FLOPs (2 per multiply-add, torch's counter) and CPU latency (ms, the best
    of `latency_runs`, as the classifiers' evaluation) of translating one image."""
    cpu_model = copy.deepcopy(generator).cpu().eval()
    images, labels = torch.zeros(1, *image_shape), torch.zeros(1, generator.c_dim)
    flops = count_flops(cpu_model, (images, labels))
    with torch.inference_mode():
        latency = time_call(lambda: cpu_model(images, labels), torch.device("cpu"), warmup=3, runs=latency_runs, best=True)
    return {
        "params": count_parameters(generator),
        "flops": flops,
        "macs": flops // 2,
        "speed": {"cpu": {"latency_ms_batch1": latency * 1e3}},
    }


def evaluate_generator_run(
    run_dir: str | Path, device: str | None = None, fid_images: int | None = None, grid_images: int = 8, latency_runs: int = 30
) -> dict[str, Any]:
    """Score a finished teacher or LIT run: `eval.json` (parameters, FLOPs, CPU latency at
    batch 1, FID by the translation protocol) and `samples.png` in `run_dir`. `device` and
    `fid_images` override the run's settings; the FID subset is seeded independently of the
    run, so every run of one data set is scored on the same test images."""
    from lit.evaluate.fid import generator_fid, sample_grid

    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json")
    s = GANSettings.from_dict(config["settings"])
    device = resolve_device(device or s.device)
    generator, saved = load_model(run_dir / "checkpoints" / "generator.pt", device=device)
    data = load_gan_data(s)
    exclusive = exclusive_attributes(data.class_names)
    num_images = fid_images or s.fid_images
    scored = generator_fid(
        generator, data.test, exclusive, num_images, FID_SUBSET_SEED, s.fid_batch_size, str(device), s.fid_weights
    )
    shown = slice(0, grid_images)
    sample_grid(generator, data.test.inputs[shown], data.test.labels[shown], run_dir / "samples.png", exclusive, str(device))
    result = {
        "config": config,
        "job": config["job"],
        "family": "stargan",
        "depth": saved["spec"]["depth"],
        "data": s.data,
        **generator_cost(generator, data.input_shape, latency_runs),
        "fid": scored["fid"],
        "fid_real_images": scored["real_images"],
        "fid_fake_images": scored["fake_images"],
        "fid_weights": s.fid_weights,
        "exclusive_attributes": [data.class_names[i] for i in exclusive] if data.class_names else [],
        "samples": "samples.png",
    }
    if (run_dir / "summary.json").exists():
        result["train"] = read_json(run_dir / "summary.json")
    write_json(run_dir / "eval.json", result)
    return result
