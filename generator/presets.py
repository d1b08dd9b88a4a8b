"""Model presets and offline tiny components (same classes as the real model).

`wan2.2-ti2v-5b` is the public Wan2.2-TI2V-5B transformer config plus ActAvatar's adapter
settings. `tiny` is a few blocks with small widths: tests, CPU benchmarks and the trainer's
smoke runs use it through exactly the same code path. Nothing here touches the network:
the tiny tokenizer is trained locally with `tokenizers` and every tiny component is built
from a config, saved with `save_pretrained` and reloaded with `from_pretrained`.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "PRESETS",
    "TINY_TRANSFORMER_CONFIG",
    "TINY_VAE_CONFIG",
    "WAN22_TI2V_5B_SCHEDULER_CONFIG",
    "WAN22_TI2V_5B_TRANSFORMER_CONFIG",
    "WAN22_TI2V_5B_WAN_CONFIG",
    "build_tiny_components",
    "build_tiny_pipeline",
    "build_tiny_tokenizer",
    "build_tiny_wan_and_wav2vec_dirs",
    "get_transformer_config",
    "meta_transformer",
]

# transformer/config.json of Wan-AI/Wan2.2-TI2V-5B-Diffusers (GENERATOR.md §1.1)
WAN22_TI2V_5B_WAN_CONFIG: dict[str, Any] = {
    "added_kv_proj_dim": None,
    "attention_head_dim": 128,
    "cross_attn_norm": True,
    "eps": 1e-06,
    "ffn_dim": 14336,
    "freq_dim": 256,
    "image_dim": None,
    "in_channels": 48,
    "num_attention_heads": 24,
    "num_layers": 30,
    "out_channels": 48,
    "patch_size": [1, 2, 2],
    "pos_embed_seq_len": None,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 1024,
    "text_dim": 4096,
}

# Adapter for a Wav2Vec2-base encoder (768 wide, 12 layers), MultiTalk-sized token budget.
ACTAVATAR_5B_ADAPTER: dict[str, Any] = {
    "audio_in_dim": 768,
    "audio_layers": 12,
    "audio_window": 2,
    "audio_temporal_stride": 4,
    "audio_hidden_dim": 512,
    "audio_tokens_per_frame": 32,
    "audio_token_dim": 768,
    "audio_gamma": 1.5,
    "audio_progressive": True,
    "audio_scale": 1.0,
    "max_phases": 8,
}

WAN22_TI2V_5B_TRANSFORMER_CONFIG: dict[str, Any] = {
    **WAN22_TI2V_5B_WAN_CONFIG,
    **ACTAVATAR_5B_ADAPTER,
}

WAN22_TI2V_5B_SCHEDULER_CONFIG: dict[str, Any] = {
    "prediction_type": "flow_prediction",
    "use_flow_sigmas": True,
    "num_train_timesteps": 1000,
    "flow_shift": 5.0,
}

TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 48,
    "out_channels": 48,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 4,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 32,
    "audio_in_dim": 16,
    "audio_layers": 2,
    "audio_window": 2,
    "audio_temporal_stride": 4,
    "audio_hidden_dim": 32,
    "audio_tokens_per_frame": 4,
    "audio_token_dim": 16,
    "audio_gamma": 1.5,
    "max_phases": 4,
}

# diffusers' own Wan2.2 test VAE (tests/pipelines/wan/test_wan_22.py)
TINY_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 3,
    "z_dim": 48,
    "in_channels": 12,
    "out_channels": 12,
    "is_residual": True,
    "patch_size": 2,
    "latents_mean": [0.0] * 48,
    "latents_std": [1.0] * 48,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "temperal_downsample": [False, True, True],
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": TINY_TRANSFORMER_CONFIG,
    "wan2.2-ti2v-5b": WAN22_TI2V_5B_TRANSFORMER_CONFIG,
}


def get_transformer_config(name: str, **overrides: Any) -> dict[str, Any]:
    """A copy of a preset's `ActAvatarTransformer3DModel` kwargs, with overrides."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r} (one of {sorted(PRESETS)})")
    return {**PRESETS[name], **overrides}


def meta_transformer(name: str = "wan2.2-ti2v-5b", **overrides: Any):
    """Instantiate a preset on the meta device (shapes and counts, no memory)."""
    import torch

    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    with torch.device("meta"):
        return ActAvatarTransformer3DModel(**get_transformer_config(name, **overrides))


# ----------------------------------------------------------------------------------------------
# Offline tiny components
# ----------------------------------------------------------------------------------------------
_WORDS = [
    "a",
    "woman",
    "man",
    "person",
    "speaker",
    "presenter",
    "in",
    "business",
    "attire",
    "casual",
    "shirt",
    "speaking",
    "talking",
    "professionally",
    "calmly",
    "warmly",
    "to",
    "the",
    "camera",
    "office",
    "studio",
    "kitchen",
    "garden",
    "background",
    "bright",
    "soft",
    "light",
    "smiles",
    "nods",
    "gestures",
    "outward",
    "with",
    "open",
    "palm",
    "points",
    "downward",
    "upward",
    "at",
    "chart",
    "emphasize",
    "detail",
    "raises",
    "both",
    "hands",
    "waves",
    "hello",
    "shrugs",
    "shoulders",
    "tilts",
    "head",
    "looks",
    "left",
    "right",
    "counts",
    "on",
    "fingers",
    "crosses",
    "arms",
    "leans",
    "forward",
    "back",
    "thumbs",
    "up",
    "claps",
    "holds",
    "up",
    "one",
    "finger",
    "explains",
    "shows",
    "slowly",
    "quickly",
    "gently",
    "then",
    "and",
    "while",
    "his",
    "her",
    "their",
    "eyes",
    "face",
    "lips",
    "mouth",
    "happy",
    "serious",
    "excited",
    "thoughtful",
    "medium",
    "close",
    "shot",
    "wide",
    "static",
    "camera",
    "style",
    "realistic",
    "video",
    "bright",
    "tones",
    "overexposed",
    "blurred",
    "details",
    "subtitles",
    "worst",
    "quality",
    "low",
    "jpeg",
    "ugly",
    "deformed",
    "phase",
    "start",
    "end",
    "seconds",
]


def _tiny_corpus(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        words.insert(rng.randint(0, len(words)), f"[{a}.{b}s-{b}.{a}s]")
        lines.append(" ".join(words).capitalize() + rng.choice([".", ",", "!", "?", ""]))
    return lines


def build_tiny_tokenizer(vocab_size: int = 400):
    """A small Unigram (SentencePiece-style) tokenizer trained offline, as a `T5Tokenizer`.

    Same class and pre-tokenisation as umT5's (Metaspace, `</s>` appended, `<pad>`=0,
    `</s>`=1, `<unk>`=2), so offsets behave like the real one.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        shrinking_factor=0.75,
    )
    tok.train_from_iterator(_tiny_corpus(), trainer=trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def _tiny_wav2vec2_config():
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        vocab_size=32,
        do_stable_layer_norm=False,
        feat_extract_norm="group",
    )


def tiny_umt5_config(vocab_size: int, d_model: int):
    """The small umT5 encoder config used by tests, benchmarks and the synthetic bench."""
    from transformers import UMT5Config

    return UMT5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def build_tiny_components(seed: int = 0) -> dict[str, Any]:
    """Random tiny components (CPU, float32), seeded: the kwargs of `ActAvatarPipeline`."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
    from transformers import UMT5EncoderModel, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        tiny_umt5_config(len(tokenizer), TINY_TRANSFORMER_CONFIG["text_dim"])
    ).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(**TINY_VAE_CONFIG).eval()
    torch.manual_seed(seed + 2)
    transformer = ActAvatarTransformer3DModel(**TINY_TRANSFORMER_CONFIG).eval()
    # A "trained-looking" adapter and phase table, so tests exercise the audio/PACA paths.
    with torch.no_grad():
        for block in transformer.blocks:
            torch.nn.init.normal_(block.audio_attn.to_out[0].weight, std=0.2)
        torch.nn.init.normal_(transformer.phase_embedding.weight, std=0.5)
        transformer.phase_embedding.weight[transformer.phase_pad_id].zero_()
    torch.manual_seed(seed + 3)
    audio_encoder = Wav2Vec2Model(_tiny_wav2vec2_config()).eval()
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=False,
    )
    scheduler = UniPCMultistepScheduler(**WAN22_TI2V_5B_SCHEDULER_CONFIG)
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "scheduler": scheduler,
        "transformer": transformer,
        "audio_encoder": audio_encoder,
        "audio_feature_extractor": feature_extractor,
    }


_CACHE_VERSION = "1"


def default_cache_dir() -> Path:
    root = os.environ.get("AVATAR_FLOW_TINY_CACHE") or os.path.join(
        tempfile.gettempdir(), "avatar-flow-tiny"
    )
    return Path(root) / f"v{_CACHE_VERSION}"


def build_tiny_pipeline(directory: str | Path | None = None, seed: int = 0):
    """A tiny `ActAvatarPipeline` saved to `directory` and reloaded with `from_pretrained`.

    Cached: if `directory` already holds a saved pipeline it is only loaded. Default
    directory: `$AVATAR_FLOW_TINY_CACHE` or `<tmp>/avatar-flow-tiny/v<N>/pipeline-<seed>`.
    """
    from generator.pipeline_actavatar import ActAvatarPipeline

    directory = Path(directory) if directory else default_cache_dir() / f"pipeline-{seed}"
    if not (directory / "model_index.json").is_file():
        tmp = Path(
            tempfile.mkdtemp(
                prefix=".tiny-", dir=directory.parent if directory.parent.exists() else None
            )
        )
        ActAvatarPipeline(**build_tiny_components(seed)).save_pretrained(
            tmp, safe_serialization=True
        )
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, directory)  # atomic publish; a concurrent builder may win
        except OSError:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return ActAvatarPipeline.from_pretrained(directory, use_safetensors=True)


def build_tiny_wan_and_wav2vec_dirs(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny *plain Wan2.2 TI2V* diffusers folder and a tiny Wav2Vec2 folder.

    Used to test `ActAvatarPipeline.from_wan` exactly as with the public checkpoints.
    """
    import torch
    from diffusers import WanPipeline, WanTransformer3DModel

    from generator.transformer_actavatar import wan_config_from_actavatar

    directory = Path(directory)
    comps = build_tiny_components(seed)
    torch.manual_seed(seed + 5)
    wan = WanTransformer3DModel(**wan_config_from_actavatar(TINY_TRANSFORMER_CONFIG)).eval()
    wan_pipe = WanPipeline(
        tokenizer=comps["tokenizer"],
        text_encoder=comps["text_encoder"],
        vae=comps["vae"],
        scheduler=comps["scheduler"],
        transformer=wan,
        expand_timesteps=True,
    )
    wan_dir, w2v_dir = directory / "wan", directory / "wav2vec2"
    wan_pipe.save_pretrained(wan_dir, safe_serialization=True)
    comps["audio_encoder"].save_pretrained(w2v_dir, safe_serialization=True)
    comps["audio_feature_extractor"].save_pretrained(w2v_dir)
    return wan_dir, w2v_dir
