"""The method contract (after mdistiller's distillers): a method is a small objective.

The engine asks it, phase by phase, which parameters train (one or more named groups,
each with its own optimiser) and, for every batch, for its updates: each update names
the group it steps and the named loss terms whose sum it minimises. The engine sums the
terms, steps that group's optimiser and logs every term. A classifier method implements
`losses` (one update a batch); a method with several players (a GAN's generator and
discriminator) implements `updates`. A method never touches optimisers, data loaders or
files; modules it trains beside the student (a regressor, a discriminator) are its
`extra_modules`, which the engine checkpoints and restores (buffers too: a memory bank
resumes exactly). Every training step carries its examples' rows in the training split
(`Step.indices`) and the context the split's labels by row (`MethodContext.train_labels`),
so a method may keep per-example state or draw examples by class (CRD's negatives); a
classifier method that needs the step implements `updates` instead of `losses`. A
method that changes the
student's architecture (network slimming prunes it) does so only at the start of a phase,
in `reshape_student`, and returns the new model spec options; the engine then moves the
new modules to its device, builds the phase's optimisers on them, records the spec in
every checkpoint and restarts the validation selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import nn

from lit import catalog
from lit.config import MethodConfig
from lit.runtime.registry import Registry

MODEL_GROUP = "model"  # the parameter group of a method with a single optimiser


@dataclass
class Update:
    """One optimiser step: the group it steps, the named loss terms (their sum is minimised)
    and the student's logits where there are any (for the training accuracy)."""

    group: str
    terms: dict[str, torch.Tensor]
    logits: torch.Tensor | None = None


@dataclass
class Step:
    """Where a batch lies in its phase. `rng` is the run's data generator: a method draws
    every random number of a step from it, so a resumed run draws the same ones."""

    phase: str
    index: int  # steps done in this phase before this one
    progress: float  # fraction of the phase done, in [0, 1]
    rng: torch.Generator
    # the batch's rows in the training split (`MethodContext.train_labels`), on the training
    # device, in the batch's order; in a data-parallel run, this rank's slice
    indices: torch.Tensor | None = None


@dataclass
class MethodContext:
    """What a method may need to know of its run besides its config and models."""

    input_shape: tuple[int, ...] = ()
    active_phases: tuple[str, ...] = ()  # the phases that will run (a phase of length 0 does not)
    teacher_extras: dict[str, Any] | None = None  # the teacher run's own extra modules' weights (a GAN's discriminator)
    family: str = ""  # the student's model family (`model.family`)
    phase_epochs: dict[str, int] = field(default_factory=dict)  # the length of each epoch-based phase, in epochs
    # the training split's labels by row (CPU): its size, and each `Step.indices` row's label
    train_labels: torch.Tensor | None = None


class Method:
    # set from the method's `lit.catalog` entry when it registers (these are the defaults)
    phases: ClassVar[tuple[str, ...]] = ("train",)
    needs_teacher: ClassVar[bool] = False
    same_family_teacher: ClassVar[bool] = False  # LIT: the teacher's sections feed the student's
    selects_on_validation: ClassVar[bool] = True  # best.pt is chosen on validation accuracy (a classifier)
    image_scaling: ClassVar[str] = "standardise"  # or "symmetric": images in [-1, 1] (generators)
    # the `method.*` keys this method reads; the others cannot change its result
    uses: ClassVar[tuple[str, ...]] = ()
    reshapes_student: ClassVar[bool] = False  # changes the student's architecture in `reshape_student`

    def __init__(
        self, cfg: MethodConfig, student: nn.Module, teacher: nn.Module | None = None, context: MethodContext | None = None
    ) -> None:
        self.cfg = cfg
        self.student = student
        self.teacher = teacher
        self.context = context or MethodContext()
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
        self.frozen: list[nn.Module] = []

    def extra_modules(self) -> nn.ModuleDict:
        """Trainable modules beyond the student (a regressor, say); they are checkpointed."""
        return nn.ModuleDict()

    def start_phase(self, phase: str) -> list[nn.Parameter]:
        """Freeze what `phase` freezes and return the parameters it trains."""
        self.frozen = []
        self.student.requires_grad_(True)
        return [p for p in self.trainable_modules().parameters() if p.requires_grad]

    def param_groups(self, phase: str) -> dict[str, list[nn.Parameter]]:
        """The parameters `phase` trains, by optimiser; one group unless a method has several players."""
        return {MODEL_GROUP: self.start_phase(phase)}

    def trainable_modules(self) -> nn.ModuleList:
        return nn.ModuleList([self.student, self.extra_modules()])

    def train_mode(self) -> None:
        """Training mode for what trains; frozen modules stay in eval mode so their
        batch-norm statistics stay exactly what was copied."""
        self.student.train()
        self.extra_modules().train()
        for module in self.frozen:
            module.eval()

    def freeze(self, *modules: nn.Module) -> None:
        for module in modules:
            module.requires_grad_(False)
            self.frozen.append(module)

    def teacher_logits_and_feats(self, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's forward, frozen: eval mode and `no_grad` (not `inference_mode`,
        so its features can serve as regression targets in a backward pass)."""
        assert self.teacher is not None
        with torch.no_grad():
            feats = self.teacher.features(inputs)
            return self.teacher.head(feats[-1]), feats

    def epochs_done(self, phase: str, progress: float) -> int:
        """The epochs of `phase` completed before a step at `progress` (the engine's progress
        of a step is `(epoch + step / steps) / epochs`), for a warm-up counted in epochs."""
        epochs = self.context.phase_epochs.get(phase)
        if epochs is None:
            raise ValueError(f"{type(self).__name__} counts the epochs of phase {phase!r}, whose length in epochs it was not given")
        return math.floor(progress * epochs + 1e-9)  # the tolerance absorbs rounding of (epoch + 0 / steps) / epochs * epochs

    def reshape_student(self, phase: str, options: dict[str, Any]) -> dict[str, Any] | None:
        """Called as `phase` starts (not when a run resumes inside it), before its parameter
        groups are asked for. A method that changes the student's architecture here (in
        place, or by pointing `self.student` at a new module) returns the student's new
        spec options (`options` are the current ones), from which `lit.models.build_model`
        rebuilds it; None when the architecture stays as it is."""
        return None

    def set_student(self, student: nn.Module) -> None:
        """Train `student` from now on: on resume, the engine rebuilds a reshaped student
        from its saved spec and hands it over here."""
        self.student = student

    def updates(self, step: Step, inputs: torch.Tensor, labels: torch.Tensor) -> Iterator[Update]:
        """The updates of one batch, in order; the engine applies each before asking for the next."""
        logits, terms = self.losses(step.phase, inputs, labels, step.progress)
        yield Update(MODEL_GROUP, terms, logits)

    def losses(self, phase: str, inputs: torch.Tensor, labels: torch.Tensor, progress: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the student's logits and the named loss terms (already weighted: the
        objective is their sum). `progress` is the fraction of the phase done, in [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} implements neither losses() nor updates()")


METHODS: Registry[type[Method]] = Registry(catalog.METHODS)


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Register a method class under `name`; its metadata (phases, uses, ...) comes from
    the method's entry in `lit.catalog`, where planning reads it without importing torch."""
    register = METHODS.register(name)

    def decorate(cls: type[Method]) -> type[Method]:
        entry = catalog.METHODS.get(name)
        for key in catalog.MethodEntry.metadata_names():
            if key in vars(cls):
                raise ValueError(f"method {name!r}: set {key!r} in its lit/catalog.py entry, not on the class")
            setattr(cls, key, getattr(entry, key))
        return register(cls)

    return decorate
