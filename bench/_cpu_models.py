"""The ViT-B/32-sized models of ``bench/cpu_runtime.py``, built from configs (random weights).

The model hub cannot be reached here, so the CLIP and ViT are built from their
configs and saved to a directory, then loaded by path like any local model:
the real loading code runs. Speed does not depend on the weights; quality
figures on random weights are only a weak proxy for a trained model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionnet.workers.models.info import RANDOM_WEIGHTS_FLAG

# ViT-B/32: 12 layers of width 768 (12 heads, MLP 3072), 32 px patches at 224 px.
B32: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_clip_b32(out: Path, seed: int = 0) -> Path:
    """CLIP with a ViT-B/32 vision tower and projection to 512, and CLIP's processor at 224.

    The text tower is tiny and no tokenizer is saved: the embedder then loads
    only the vision tower (text search off), which is all an index job runs.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        vision_config={**B32, "projection_dim": 512},
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "projection_dim": 512,
        },
        projection_dim=512,
    )
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    out.mkdir(parents=True, exist_ok=True)
    model: Any = CLIPModel(config)
    model.eval().save_pretrained(out)
    CLIPImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    ).save_pretrained(out)
    return out


def build_vit_b32(out: Path, seed: int = 1) -> Path:
    """A ViT-B/32 (ViTModel with its pooler) and ViT's processor at 224."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(**B32)
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    out.mkdir(parents=True, exist_ok=True)
    model: Any = ViTModel(config)
    model.eval().save_pretrained(out)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(out)
    return out
