"""StarGAN's losses (CVPR 2018), shared by the `stargan` teacher objective and the
adversarial fine-tuning of `gan_lit`.

WGAN-GP adversarial loss (lambda_gp), domain classification by BCE on the attribute
logits (lambda_cls), cycle reconstruction by L1 (lambda_rec). Per batch: one
discriminator update, then a generator update after every `n_critic`-th discriminator
update (the official order). The target domains are the batch's own labels in a random
order (as the official code); every random draw comes from the step's generator.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from lit.config import MethodConfig
from lit.methods.base import Step, Update
from lit.models.stargan import StarGANDiscriminator

GENERATOR, DISCRIMINATOR = "generator", "discriminator"


def build_discriminator(cfg: MethodConfig, input_shape: tuple[int, ...], c_dim: int) -> StarGANDiscriminator:
    channels, height, width = input_shape
    if height != width or height % 4:
        raise ValueError(f"StarGAN needs square images with a side divisible by 4, the data set has {height}x{width}")
    return StarGANDiscriminator(
        image_size=height, conv_dim=cfg.d_conv_dim, c_dim=c_dim, repeat_num=cfg.d_repeat_num, image_channels=channels
    )


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE on attribute logits, summed over attributes, mean over the batch (official)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """WGAN-GP: (||grad_x D(x_hat)||_2 - 1)^2 at random mixes x_hat of real and fake images."""
    alpha = torch.rand(len(real), 1, 1, 1, generator=rng, device=real.device)
    mixed = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    critic, _ = discriminator(mixed)
    (gradient,) = torch.autograd.grad(critic, mixed, torch.ones_like(critic), create_graph=True)
    return ((gradient.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def shuffled(labels: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Target domains: the batch's own labels in a random order (official StarGAN)."""
    return labels[torch.randperm(len(labels), generator=rng, device=labels.device)]


def discriminator_terms(
    cfg: MethodConfig, generator: nn.Module, discriminator: nn.Module, real, label_org, label_trg, rng
) -> dict[str, torch.Tensor]:
    critic_real, logits_real = discriminator(real)
    with torch.no_grad():
        fake = generator(real, label_trg)
    critic_fake, _ = discriminator(fake)
    return {
        "D_real": -critic_real.mean(),
        "D_fake": critic_fake.mean(),
        "D_cls": cfg.lambda_cls * classification_loss(logits_real, label_org),
        "D_gp": cfg.lambda_gp * gradient_penalty(discriminator, real, fake, rng),
    }


def generator_terms(cfg: MethodConfig, generator: nn.Module, discriminator: nn.Module, real, label_org, label_trg) -> dict[str, torch.Tensor]:
    fake = generator(real, label_trg)
    critic_fake, logits_fake = discriminator(fake)
    return {
        "G_fake": -critic_fake.mean(),
        "G_rec": cfg.lambda_rec * (real - generator(fake, label_org)).abs().mean(),  # cycle back to the source domain
        "G_cls": cfg.lambda_cls * classification_loss(logits_fake, label_trg),
    }


def adversarial_updates(
    cfg: MethodConfig, generator: nn.Module, discriminator: nn.Module, step: Step, real: torch.Tensor, label_org: torch.Tensor
) -> Iterator[Update]:
    """One discriminator update, and a generator update after every `n_critic`-th one."""
    label_trg = shuffled(label_org, step.rng)
    yield Update(DISCRIMINATOR, discriminator_terms(cfg, generator, discriminator, real, label_org, label_trg, step.rng))
    if (step.index + 1) % cfg.n_critic == 0:
        yield Update(GENERATOR, generator_terms(cfg, generator, discriminator, real, label_org, label_trg))
