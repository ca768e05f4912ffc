"""CifarNet: the demo model's architecture, a small conv net that keeps 32-pixel images whole.

transformers' ResNet stem (7x7 stride 2, then max-pool) shrinks a 32 px image
to 8x8 before its first stage, so the old demo model had to upscale CIFAR to
64 px and spend most of its compute on pixels that carry nothing. This net
follows the fast CIFAR-10 recipes instead (airbench94, KellerJordan/
cifar10-airbench): a frozen 2x2 patch-whitening convolution, three conv groups
at 32, 16 and 8 px, BatchNorm with trainable shifts only, GELU, and a bias-free
linear head with a fixed temperature.

It is a ``PreTrainedModel`` registered with transformers' Auto classes, so a
saved directory loads through ``AutoModel`` / ``AutoModelForImageClassification``
(and the service's own loader) like any hub model, once this module has been
imported (``register_auto_classes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)

MODEL_TYPE = "visionnet-cifarnet"


class CifarNetConfig(PretrainedConfig):  # type: ignore[no-untyped-call]
    model_type = MODEL_TYPE

    def __init__(
        self,
        widths: Sequence[int] = (64, 256, 256),
        num_channels: int = 3,
        whiten_kernel_size: int = 2,
        batchnorm_momentum: float = 0.4,
        batchnorm_eps: float = 1e-5,
        logit_scale: float = 1 / 9,
        **kwargs: Any,
    ) -> None:
        self.widths = list(widths)
        self.num_channels = num_channels
        self.whiten_kernel_size = whiten_kernel_size
        self.batchnorm_momentum = batchnorm_momentum
        self.batchnorm_eps = batchnorm_eps
        self.logit_scale = logit_scale
        super().__init__(**kwargs)

    @property
    def whiten_width(self) -> int:
        """Each whitening eigenvector and its negation: 2 * channels * kernel area."""
        return 2 * self.num_channels * self.whiten_kernel_size**2

    @property
    def hidden_size(self) -> int:
        return int(self.widths[-1])


def _batchnorm(width: int, config: CifarNetConfig) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(width, eps=config.batchnorm_eps, momentum=config.batchnorm_momentum)
    norm.weight.requires_grad = False  # scale fixed at 1: only the shift trains
    return norm


class CifarNetConvGroup(nn.Module):
    """conv, max-pool (halves the side), BN, GELU, conv, BN, GELU."""

    def __init__(self, width_in: int, width_out: int, config: CifarNetConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width_in, width_out, 3, padding="same", bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _batchnorm(width_out, config)
        self.conv2 = nn.Conv2d(width_out, width_out, 3, padding="same", bias=False)
        self.norm2 = _batchnorm(width_out, config)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        out: torch.Tensor = self.activation(self.norm2(self.conv2(x)))
        return out


class CifarNetPreTrainedModel(PreTrainedModel):  # type: ignore[no-untyped-call]
    config_class = CifarNetConfig
    base_model_prefix = "cifarnet"
    main_input_name = "pixel_values"

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's defaults; conv kernels start as identity on their first channels.

        The whitening layer's weights are set from data by the trainer
        (``whiten_from_patches``) and loaded from the checkpoint otherwise.
        """
        if isinstance(module, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
            module.reset_parameters()
        if isinstance(module, nn.Conv2d):
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            if module.kernel_size == (3, 3):
                nn.init.dirac_(module.weight.data[: module.in_channels])


class CifarNetModel(CifarNetPreTrainedModel):  # type: ignore[no-untyped-call]
    """The backbone: ``pooler_output`` is the embedding (the last group's width)."""

    def __init__(self, config: CifarNetConfig) -> None:
        super().__init__(config)
        k = config.whiten_kernel_size
        self.whiten = nn.Conv2d(config.num_channels, config.whiten_width, k, bias=True)
        self.activation = nn.GELU()
        widths = [config.whiten_width, *config.widths]
        self.groups = nn.ModuleList(
            CifarNetConvGroup(widths[i], widths[i + 1], config) for i in range(len(config.widths))
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.post_init()  # type: ignore[no-untyped-call]

    def forward(
        self, pixel_values: torch.Tensor, return_dict: bool | None = None, **_: Any
    ) -> BaseModelOutputWithPoolingAndNoAttention:
        x = self.activation(self.whiten(pixel_values))
        for group in self.groups:
            x = group(x)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=x, pooler_output=self.pool(x).flatten(1)
        )


class CifarNetForImageClassification(CifarNetPreTrainedModel):  # type: ignore[no-untyped-call]
    """Backbone plus a bias-free linear head; logits scaled by ``logit_scale``."""

    def __init__(self, config: CifarNetConfig) -> None:
        super().__init__(config)
        self.cifarnet = CifarNetModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels or 2, bias=False)
        self.post_init()  # type: ignore[no-untyped-call]

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **_: Any,
    ) -> ImageClassifierOutputWithNoAttention:
        features = self.cifarnet(pixel_values).pooler_output
        logits = self.classifier(features) * self.config.logit_scale
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits)


def whiten_from_patches(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set the first layer to whiten ``k x k`` patches: eigenvectors of their covariance.

    ``images`` are normalised training images (N, C, H, W); each eigenvector is
    scaled by 1/sqrt(eigenvalue) and used with its negation, so after GELU
    both signs of every whitened direction survive.
    """
    c = images.shape[1]
    h, w = layer.kernel_size
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()
    flat = patches.reshape(len(patches), -1)
    covariance = (flat.T @ flat) / len(flat)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    eigenvalues = eigenvalues.flip(0).view(-1, 1, 1, 1)
    eigenvectors = eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    with torch.no_grad():
        layer.weight.copy_(torch.cat((scaled, -scaled)))


_registered = False


def register_auto_classes() -> None:
    """Make ``model_type: visionnet-cifarnet`` loadable through the Auto classes (idempotent)."""
    global _registered
    if _registered:
        return
    AutoConfig.register(MODEL_TYPE, CifarNetConfig, exist_ok=True)
    AutoModel.register(CifarNetConfig, CifarNetModel, exist_ok=True)
    AutoModelForImageClassification.register(
        CifarNetConfig, CifarNetForImageClassification, exist_ok=True
    )
    _registered = True
