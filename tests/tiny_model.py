"""A tiny random-weights model in the demo architecture, built from a config and saved to disk.

Tests load it by path through the same code that loads real models. Its config
carries the random-weights flag, so results made with it say so.
"""

from __future__ import annotations

from pathlib import Path

from visionnet.training.architecture import demo_processor, resnet_config
from visionnet.workers.models.info import RANDOM_WEIGHTS_FLAG
from visionnet.workers.models.shipped import DEMO_LABELS


def build_tiny_model(
    out: Path, *, seed: int = 1, hidden_sizes: tuple[int, ...] = (8, 16), image_size: int = 32
) -> Path:
    """Fast by default; wider and at a larger input size it is slow enough to kill mid-task."""
    import torch
    from transformers import ResNetForImageClassification

    torch.manual_seed(seed)
    config = resnet_config(DEMO_LABELS, hidden_sizes=hidden_sizes)
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    model = ResNetForImageClassification(config)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    demo_processor(image_size).save_pretrained(out)
    return out


# A word-level vocabulary is enough for a test: tokens only need to tell texts apart.
TINY_CLIP_WORDS = (
    "<|startoftext|>",
    "<|endoftext|>",
    "[UNK]",
    *["a", "photo", "of", "red", "green", "blue", "dog", "cat", "car", "ship", "sky"],
)


def build_tiny_clip(out: Path, *, seed: int = 3, image_size: int = 32) -> Path:
    """A random-weights CLIP (both towers, projections) with its tokenizer, as from the hub."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    vocab = {word: i for i, word in enumerate(TINY_CLIP_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()  # type: ignore[assignment]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="[UNK]",
    )
    # Each tower's config carries the projection size too, as hub checkpoints' do: the
    # vision and text models load alone from the directory.
    tower = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "projection_dim": 8,
    }
    config = CLIPConfig(
        text_config={
            **tower,
            "num_attention_heads": 2,
            "vocab_size": len(vocab),
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            **tower,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    out.mkdir(parents=True, exist_ok=True)
    CLIPModel(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    demo_processor(image_size).save_pretrained(out)
    return out
