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


def tiny_gan_settings(**overrides) -> dict:
    """StarGAN on 16-px colour digits, conv_dim 16: about 0.05 s an iteration on 2 CPU cores."""
    settings = dict(
        data="color_digits",
        depth=2,
        conv_dim=16,
        d_conv_dim=16,
        iterations=12,
        batch_size=8,
        n_critic=2,
        checkpoint_every=4,
        log_every=1,
        device="cpu",
        seed=3,
        fid_images=4,
        fid_batch_size=32,
    )
    settings.update(overrides)
    return settings
