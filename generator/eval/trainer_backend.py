"""Drive the real two-stage trainer (`generator.train.Trainer`) on the synthetic world.

Why: the ablation must measure the code that trains real checkpoints, not a look-alike.
The world's clips are written as the trainer's sharded latent cache (`CacheWriter`), the
starting weights as an ActAvatar folder (`model_index.json` + `transformer/`, what
`resolve_base` accepts), and each row is one or two `Trainer` runs configured with its
public `TrainConfig`. Mapping of the ablation switches onto the trainer's API:

- no PACA: `data.use_phase_ids = False` (the model gets `phase_ids=None`; the phase
  embedding neither acts nor learns);
- constant audio scale: `model.audio_progressive = False` (the base's `audio_scale`, 1.0,
  in every block instead of `(l/L)**gamma`);
- backbone pre-training: a stage-2 run on brief captions with `audio_dropout = 1`
  (every sample's audio gate is 0, so the adapter neither acts nor learns);
- two-stage: a stage-1 run (adapter only, frozen backbone, brief captions, T2V) whose
  extracted `audio_adapter.safetensors` is injected into the stage-2 run;
- timing elements (issue 19): `model.time_aware_phases`, `model.frame_time_embedding`,
  `model.phase_anchor_embedding` (the trainer loads the backbone with the switch on; the new
  zero-init modules start as identity); readable anchors: the `prompt-tokens` cache;
- the positive control (oracle routing): `OracleRoutingTrainer`, the same `Trainer` whose model
  gets the oracle's text cross-attention, masked per batch from the batch's own block ids and
  phase windows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from generator.train.trainer import Trainer

__all__ = ["OracleRoutingTrainer", "load_trained", "run_trainer", "write_base", "write_cache"]


class OracleRoutingTrainer(Trainer):
    """`Trainer` for the positive control: every block's text cross-attention is the oracle's
    (`generator.eval.controls.install_oracle_routing`), so frames inside phase k's window see
    only base and phase-k tokens. Everything else (data, loss, optimizer, checkpoints) is the
    product trainer's."""

    def _setup_model(self) -> Any:
        from generator.eval.controls import install_oracle_routing

        model = super()._setup_model()
        install_oracle_routing(model)
        return model


def write_cache(
    directory: Path,
    latents: torch.Tensor,
    audio: torch.Tensor,
    prompt: tuple[torch.Tensor, torch.Tensor] | None,
    caption: torch.Tensor | None,
    pad_id: int,
    shard_size: int = 256,
    windows: torch.Tensor | None = None,
) -> Path:
    """Write clips as a trainer cache. `prompt` = (states (N, S, D), block ids (N, S)),
    `caption` = brief-caption states (N, S, D); text is stored trimmed to real tokens (the
    first `pad_id` of each row's block ids ends it). Block ids (and the phase windows, for
    time-aware phases) are always stored; a run trains without them with
    `use_phase_ids=False`."""
    from generator.train.data import CacheWriter

    directory = Path(directory)
    text_dim = (prompt[0] if prompt is not None else caption).shape[-1]  # type: ignore[union-attr]
    encoders = {
        "name": "synthetic-world",
        "text_dim": int(text_dim),
        "audio_in_dim": int(audio.shape[-1]),
        "audio_layers": int(audio.shape[-2]),
        "z_dim": int(latents.shape[1]),
    }
    with CacheWriter(directory, shard_size=shard_size, encoders=encoders) as writer:
        for i in range(latents.shape[0]):
            tensors = {"latents": latents[i], "audio": audio[i]}
            if prompt is not None:
                states, ids = prompt[0][i], prompt[1][i]
                n = int((ids != pad_id).sum())
                tensors["prompt_embeds"] = states[:n]
                tensors["phase_ids"] = ids[:n]
                if windows is not None:
                    tensors["phase_windows"] = windows[i]
            if caption is not None:
                n = int(caption[i].abs().sum(-1).gt(0).sum())
                tensors["caption_embeds"] = caption[i][:n]
            meta = {"latent_shape": list(latents[i].shape), "stage2": prompt is not None}
            writer.add(f"clip{i:05d}", tensors, meta)
    return directory


def write_bench_caches(data: Any, work: Path, pad_id: int) -> dict[str, Path]:
    """The bench's three trainer caches, written once per run: `prompt` (structured prompts with
    block ids and phase windows), `brief` (the same clips with brief captions, for stage 1) and
    `talking` (talking-head clips with captions)."""
    tr, br, th = data.train, data.train_brief, data.talking_head
    caches = {}
    if getattr(data, "train_tokens", None) is not None:  # readable anchors (attribution suite)
        tt = data.train_tokens
        caches["prompt-tokens"] = write_cache(
            work / "cache-prompt-tokens",
            tt.latents,
            tt.audio,
            (tt.text, tt.phase_ids),
            None,
            pad_id,
            windows=tt.windows,
        )
    return caches | {
        "prompt": write_cache(
            work / "cache-prompt",
            tr.latents,
            tr.audio,
            (tr.text, tr.phase_ids),
            None,
            pad_id,
            windows=tr.windows,
        ),
        "brief": write_cache(
            work / "cache-brief", tr.latents, tr.audio, (br.text, br.phase_ids), None, pad_id
        ),
        "talking": write_cache(work / "cache-talking", th.latents, th.audio, None, th.text, pad_id),
    }


def write_base(directory: Path, model: Any) -> Path:
    """An ActAvatar folder the trainer can start from (transformer + model index)."""
    directory = Path(directory)
    model.save_pretrained(directory / "transformer", safe_serialization=True)
    (directory / "model_index.json").write_text(
        json.dumps(
            {"_class_name": "ActAvatarPipeline", "transformer": ["generator", "transformer"]}
        )
    )
    return directory


def run_trainer(
    stage: str,
    base: Path,
    dataset: Path,
    out: Path,
    steps: int,
    *,
    seed: int,
    lr: float,
    batch_size: int,
    text_len: int,
    adapter: Path | None = None,
    audio_gamma: float | None = None,
    audio_progressive: bool = True,
    use_phase_ids: bool = True,
    audio_dropout: float = 0.0,
    timestep_shift: float = 1.0,
    warmup: int = 50,
    time_aware_phases: bool | None = None,
    frame_time_embedding: bool | None = None,
    phase_anchor_embedding: bool | None = None,
    trainer_cls: type[Trainer] | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One `Trainer` run; returns its summary plus `losses` (per step) and `transformer` dir.
    `extra` adds keys to the config's sections (e.g. the drift study's
    `{"model": {"reference_sink": True}, "train": {"context_noise": 0.1}}`)."""
    from generator.train import config_from_dict
    from generator.train.logs import read_log

    raw = {
        "name": out.name,
        "stage": stage,
        "output_dir": str(out),
        "seed": seed,
        "model": {
            "base": str(base),
            "adapter": str(adapter) if adapter else None,
            "gradient_checkpointing": False,
            "audio_gamma": audio_gamma,
            "audio_progressive": audio_progressive,
            "time_aware_phases": time_aware_phases,
            "frame_time_embedding": frame_time_embedding,
            "phase_anchor_embedding": phase_anchor_embedding,
        },
        "data": {
            "dataset": str(dataset),
            "batch_size": batch_size,
            "text_len": text_len,
            "audio_dropout": audio_dropout,
            "use_phase_ids": use_phase_ids,
        },
        "optim": {"lr": lr, "warmup_steps": min(warmup, steps), "max_grad_norm": 1.0},
        "train": {
            "max_steps": steps,
            "timestep_shift": timestep_shift,
            "checkpoint_every": steps,
            "keep_checkpoints": 1,
            "log_every": 1,
            "resume": "never",
        },
    }
    for section, keys in (extra or {}).items():
        raw[section].update(keys)
    cfg = config_from_dict(raw)
    summary = (trainer_cls or Trainer)(cfg, echo=False).train()
    ckpt = Path(summary["checkpoint"])
    summary["transformer"] = str(ckpt / "transformer")
    summary["losses"] = [float(r["loss"]) for r in read_log(out / "log.jsonl")]
    return summary


def load_trained(transformer_dir: str | Path, audio_gamma: float | None = None) -> Any:
    """A trained checkpoint's transformer in eval mode (gamma as trained)."""
    from generator.transformer_actavatar import ActAvatarTransformer3DModel

    kwargs = {} if audio_gamma is None else {"audio_gamma": audio_gamma}
    model = ActAvatarTransformer3DModel.from_pretrained(str(transformer_dir), **kwargs)
    return model.eval()
