"""What exists, without importing it: every data set, model family and method by name.

Planning a sweep (`lit plan`, every Snakemake process, `lit show-config`) needs to know
which names exist, the revision of each (part of every run id) and, for a method, which
phases it trains and which `method.*` keys it reads. It never needs the code behind a
name, so this module holds that knowledge as plain data and imports nothing: planning
does not load torch (about 2 s of CPU in every Snakemake process).

An entry names the module that implements it. The implementation registers itself there
(`register_method`, `register_model`, `register_dataset`); the registry refuses a name
that is missing here or registered from another module, and `Registry.get` imports the
module on first use. A method's class takes its metadata (phases, uses, ...) from its
entry when it registers, so the metadata is written once, here.

Adding a method: its file in `lit/methods/` and one `MethodEntry` below.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Entry:
    name: str
    module: str  # the module that registers the implementation
    # raise it when a change to the code behind the name changes what a run computes with
    # the same config; run ids include every revision above 1, so the pipeline does not
    # reuse runs made before the change
    revision: int = 1


@dataclass(frozen=True)
class MethodEntry(Entry):
    phases: tuple[str, ...] = ("train",)  # the `train.phases.*` it trains, in order
    needs_teacher: bool = False
    same_family_teacher: bool = False  # LIT: the teacher's sections feed the student's
    selects_on_validation: bool = True  # best.pt is chosen on validation accuracy (a classifier)
    image_scaling: str = "standardise"  # or "symmetric": images in [-1, 1] (generators)
    uses: tuple[str, ...] = ()  # the `method.*` keys it reads; the others cannot change its result
    reshapes_student: bool = False  # changes the student's architecture (pruning)

    @classmethod
    def metadata_names(cls) -> tuple[str, ...]:
        """The fields a method's class carries as attributes (all but name, module, revision)."""
        return tuple(f.name for f in fields(cls) if f.name not in {f.name for f in fields(Entry)})


class Catalog:
    """Entries by name; a miss names what exists."""

    def __init__(self, kind: str, entries: list[Entry]) -> None:
        self.kind = kind
        self._entries = {entry.name: entry for entry in entries}
        if len(self._entries) != len(entries):
            raise ValueError(f"a {kind} is listed twice")

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})") from None

    def revision(self, name: str) -> int:
        return self.get(name).revision

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


TEXT_REVISION = 2  # revision 2: the official alphabet and ids

DATASETS = Catalog("data set", [
    Entry("digits", "lit.data.digits"),
    Entry("color_digits", "lit.data.colordigits"),
    Entry("synthetic", "lit.data.synthetic"),
    Entry("cifar10", "lit.data.cifar10"),
    Entry("cifar100", "lit.data.cifar100"),
    Entry("imagefolder", "lit.data.imagefolder"),
    Entry("celeba", "lit.data.celeba"),
    *(Entry(name, "lit.data.text", TEXT_REVISION) for name in (
        "amazon_review_full", "amazon_review_polarity", "csv_reviews", "sentence_polarity", "movie_reviews")),
])

MODELS = Catalog("model family", [
    Entry("resnet", "lit.models.resnet"),
    Entry("resnext", "lit.models.resnext"),
    Entry("vdcnn", "lit.models.vdcnn", revision=2),  # revision 2: the official embedding, stem and init
    Entry("stargan", "lit.models.stargan"),
    Entry("torchvision_resnet", "lit.models.torchvision_resnet"),
    Entry("torchvision_vit", "lit.models.torchvision_vit"),
])

# the student's start from the teacher's blocks (`lit.models.teacher_init`): read by every
# classifier method with a teacher
_INIT = ("student_init", "student_init_blocks")
_GAN = ("n_critic", "lambda_gp", "lambda_cls", "lambda_rec", "d_conv_dim", "d_repeat_num")

METHODS = Catalog("method", [
    MethodEntry("scratch", "lit.methods.scratch"),
    MethodEntry("kd", "lit.methods.kd", needs_teacher=True, uses=("teacher", "hard_weight", "temperature", "tuned", *_INIT)),
    MethodEntry(
        "lit", "lit.methods.lit", phases=("lit", "finetune"), needs_teacher=True, same_family_teacher=True,
        uses=("teacher", "hard_weight", "temperature", "kd_weight", "kd_weight_schedule", "copy_stem_head",
              "freeze_stem_head", "finetune_freeze_stem_head", "objective_scale", "tuned", *_INIT),
    ),
    MethodEntry(
        "fitnets", "lit.methods.fitnets", phases=("hint", "train"), needs_teacher=True,
        uses=("teacher", "hard_weight", "temperature", "hint_section", "regressor_activation", "tuned", *_INIT),
    ),
    MethodEntry("at", "lit.methods.at", needs_teacher=True, uses=("teacher", "at_beta", *_INIT)),
    MethodEntry(
        "dkd", "lit.methods.dkd", needs_teacher=True,
        uses=("teacher", "dkd_alpha", "dkd_beta", "dkd_temperature", "dkd_warmup_epochs", *_INIT),
    ),
    MethodEntry("reviewkd", "lit.methods.reviewkd", needs_teacher=True,
                uses=("teacher", "reviewkd_weight", "reviewkd_warmup_epochs", *_INIT)),
    MethodEntry(
        "crd", "lit.methods.crd", needs_teacher=True,
        uses=("teacher", "crd_gamma", "crd_alpha", "crd_beta", "crd_kd_temperature", "crd_feat_dim", "crd_nce_k",
              "crd_nce_t", "crd_nce_m", *_INIT),
    ),
    MethodEntry("slimming", "lit.methods.slimming", phases=("sparsity", "finetune"),
                uses=("sparsity", "prune_ratio"), reshapes_student=True),
    MethodEntry("stargan", "lit.methods.stargan", phases=("gan",), selects_on_validation=False,
                image_scaling="symmetric", uses=_GAN),
    MethodEntry(
        "gan_lit", "lit.methods.gan_lit", phases=("lit", "finetune"), needs_teacher=True, same_family_teacher=True,
        selects_on_validation=False, image_scaling="symmetric", uses=("teacher", *_GAN),
    ),
])
