"""Test fixtures for the generative family: a fake CelebA folder in the real on-disk format,
and tiny StarGAN settings that train in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()


def write_fake_celeba(root: Path, partitions: tuple[int, ...] = (0, 0, 0, 1, 2, 2), seed: int = 0) -> np.ndarray:
    """Write `root/celeba/` as CelebA ships it: 178x218 JPEGs named 000001.jpg, ...;
    `list_attr_celeba.txt` (a count line, the 40 names, then space-aligned rows of -1/1);
    `list_eval_partition.txt` (`name partition`). Returns the (N, 40) {-1, 1} attributes."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1, 1], size=(len(partitions), len(CELEBA_ATTRIBUTES)))
    names = [f"{index + 1:06d}.jpg" for index in range(len(partitions))]
    for index, name in enumerate(names):
        # a flat colour per image, a bright band in the centre crop's rows and dark borders top and bottom
        pixels = np.full((218, 178, 3), 40 * index, dtype=np.uint8)
        pixels[100:120] = 250
        pixels[:20] = pixels[-20:] = 0
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=95)
    rows = [f"{name} " + " ".join(f"{value:2d}" for value in row) for name, row in zip(names, signs)]
    (folder / "list_attr_celeba.txt").write_text(f"{len(names)}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(rows) + "\n")
    (folder / "list_eval_partition.txt").write_text("".join(f"{name} {part}\n" for name, part in zip(names, partitions)))
    return signs


GAN_CONFIG = Path(__file__).resolve().parents[1] / "config" / "runs" / "colordigits-gan.yaml"


def tiny_gan_overrides(*extra: str) -> list[str]:
    """StarGAN on 16-px colour digits, conv_dim 16, 12 iterations of batch 8 (seconds on a
    CPU): a 4-block teacher with 2 LIT sections, n_critic 2, a checkpoint every 4 iterations."""
    return [
        "data.options.image_size=16", "model.depth=4", "model.options={conv_dim: 16, num_sections: 2}",
        "method.d_conv_dim=16", "method.n_critic=2", "train.batch_size=8", "train.device=cpu", "seed=3",
        "train.progress=off", "train.threads=1", "train.log_every=1", "train.checkpoint_every=4",
        "train.phases.gan.iterations=12", "evaluate.fid_images=4", "evaluate.fid_batch_size=32", *extra,
    ]


def student_overrides(teacher: Path, *extra: str) -> list[str]:
    """A 2-block gan_lit student of `teacher`: 40 LIT iterations at lr 1e-3."""
    return tiny_gan_overrides(
        "method.name=gan_lit", f"method.teacher={teacher}", "model.depth=2", "train.phases.lit.iterations=40",
        "train.phases.lit.lr=1e-3", "train.log_every=5", "train.checkpoint_every=20", *extra,
    )
