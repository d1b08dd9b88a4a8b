"""The ActAvatar generator: Wan2.2 backbone + audio adapter + PACA, its pipeline and renderers.

Exports are lazy (PEP 562 `__getattr__`): `import generator.render_types` or
`import generator.animatic` never imports torch or diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # model
    "ActAvatarTransformer3DModel": "generator.transformer_actavatar",
    "ActAvatarTransformerBlock": "generator.transformer_actavatar",
    "ActAvatarAudioProjection": "generator.transformer_actavatar",
    "ActAvatarAudioAttention": "generator.transformer_actavatar",
    "ActAvatarFrameAudioAttnProcessor": "generator.transformer_actavatar",
    "progressive_audio_scales": "generator.transformer_actavatar",
    "is_audio_adapter_key": "generator.transformer_actavatar",
    "is_actavatar_key": "generator.transformer_actavatar",
    # pipeline
    "ActAvatarPipeline": "generator.pipeline_actavatar",
    "ActAvatarPipelineOutput": "generator.pipeline_actavatar",
    "combine_guidance": "generator.pipeline_actavatar",
    "resize_center_crop": "generator.pipeline_actavatar",
    # structured prompts (PACA)
    "StructuredPrompt": "generator.render_types",
    "PromptPhase": "generator.render_types",
    "RenderedPrompt": "generator.prompting",
    "render_structured_prompt": "generator.prompting",
    "token_block_ids": "generator.prompting",
    "encode_structured_prompt": "generator.prompting",
    "DEFAULT_NEGATIVE_PROMPT": "generator.prompting",
    # audio features
    "wav2vec2_frame_features": "generator.audio",
    "frame_features_from_hidden_states": "generator.audio",
    # conditioning (clean latent frames / continuity)
    "clean_frame_mask": "generator.conditioning",
    "token_timesteps": "generator.conditioning",
    "compose_clean_latents": "generator.conditioning",
    "latent_frames_for_context": "generator.conditioning",
    "color_match": "generator.conditioning",
    # presets
    "PRESETS": "generator.presets",
    "get_transformer_config": "generator.presets",
    "meta_transformer": "generator.presets",
    "build_tiny_pipeline": "generator.presets",
    "build_tiny_components": "generator.presets",
    # training (two stages on accelerate)
    "TrainConfig": "generator.train.config",
    "Trainer": "generator.train.trainer",
    # evaluation (synthetic Action Bench)
    "SyntheticWorld": "generator.eval.world",
    "capture_text_attention": "generator.eval.phase_focus",
    # renderer
    "ActAvatarRenderer": "generator.renderer_actavatar",
    "load_actavatar_renderer": "generator.renderer_actavatar",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'generator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from generator.pipeline_actavatar import ActAvatarPipeline  # noqa: F401
    from generator.transformer_actavatar import ActAvatarTransformer3DModel  # noqa: F401
