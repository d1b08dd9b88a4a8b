"""The two-stage ActAvatar trainer on Hugging Face accelerate.

One script from a CPU test to a multi-node run: `python -m generator.train CONFIG` runs single
process; `accelerate launch --config_file ddp.yaml|fsdp.yaml -m generator.train CONFIG` runs
DDP or FSDP with no code change (accelerate owns devices, process groups, autocast, gradient
synchronisation, sharded state).

Stage 1: backbone frozen (`freeze_backbone`), only the audio adapter trains, brief captions,
T2V conditioning (every latent frame noisy). The adapter is extracted to
`audio_adapter.safetensors` at every checkpoint.
Stage 2: the stage-1 adapter is injected, the PACA table starts at zero, everything trains,
I2V conditioning (latent frame 0 clean, t = 0, excluded from the loss), structured prompts.

Run folder::

    config.yaml  log.jsonl  loss.png  samples/
    checkpoints/step-0000010/   transformer/ (diffusers, safetensors), audio_adapter.safetensors,
                                trainer_state.json, train_config.json, ema.safetensors,
                                optimizer.bin, scheduler.bin, random_states_*.pkl (accelerate)

Exact resume: accelerate's save_state/load_state restore optimizer, LR scheduler, gradient
accumulation counter and RNG; the model weights go through our save/load hooks (safetensors,
diffusers layout); `trainer_state.json` holds the data position (optimizer step). The data
stream is a pure function of (seed, position), so the resumed run continues with the exact
batches and noise it would have seen. accelerate writes optimizer/scheduler/RNG with
torch.save and reads them back with `weights_only=True` where it can; we only ever load our
own run folders, never checkpoints from elsewhere.

Progress: every event is one JSON line on stdout (main process) and in `log.jsonl`, which is
what `flows/training/train.py` streams and registers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch

from generator.train.config import TrainConfig, config_hash, config_to_dict
from generator.train.data import (
    BucketBatchSampler,
    CachedClipDataset,
    collate_clips,
    find_cache_dir,
)
from generator.train.logs import plot_loss
from generator.train.losses import flow_matching_loss
from generator.train.models import BaseModel, load_transformer, resolve_base

__all__ = [
    "Trainer",
    "data_hash",
    "find_checkpoints",
    "model_files_sha256",
    "param_group",
]

EventFn = Callable[[dict[str, Any]], None]


def param_group(name: str) -> str:
    """backbone | adapter | phase: the three parameter groups the paper's stages treat apart
    (| sink: the identity-sink embedding of `model.reference_sink`)."""
    from generator.transformer_actavatar import is_audio_adapter_key, is_phase_key, is_sink_key

    if is_sink_key(name):
        return "sink"
    if is_audio_adapter_key(name):
        return "adapter"
    if is_phase_key(name):
        return "phase"
    return "backbone"


def data_hash(cache_dir: str | Path) -> str:
    """sha256 of the cache index (sample ids, metadata and shard hashes)."""
    index = Path(find_cache_dir(cache_dir)) / "index.json"
    data = json.loads(index.read_text())
    blob = json.dumps({"samples": data["samples"], "shards": data["shards"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def model_files_sha256(folder: str | Path) -> str:
    """sha256 of a saved model: of its one safetensors file, or of the sorted shard digests."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no safetensors")
    digests = []
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digests.append(h.hexdigest())
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def find_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a `.tmp` folder is an interrupted save)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[5:]))


class Trainer:
    """Builds everything from a `TrainConfig`; `train()` runs (or resumes) the loop."""

    def __init__(self, config: TrainConfig, on_event: EventFn | None = None, echo: bool = True):
        self.cfg = config
        self.run_dir = Path(config.output_dir)
        self.on_event = on_event
        self.echo = echo
        self.step = 0
        self.ema = None
        self._pipeline = None
        self._data_wait = 0.0

    # ------------------------------------------------------------------------------ events
    def emit(self, event: dict[str, Any]) -> None:
        if not self.accelerator.is_main_process:
            return
        event = {"event": event.pop("event"), "stage": self.cfg.stage, **event}
        line = json.dumps(event, default=str)
        with open(self.run_dir / "log.jsonl", "a") as fh:
            fh.write(line + "\n")
        if self.echo:
            print(line, flush=True)
        if self.on_event is not None:
            self.on_event(event)

    # ------------------------------------------------------------------------------ setup
    def setup(self) -> Trainer:
        """Accelerator, data, model, optimizer, then resume (each step a method a stage such
        as `generator.train.distill` can extend)."""
        self._setup_accelerator()
        self._setup_data()
        model = self._setup_model()
        self._setup_optimizer(model)
        self._resume()
        return self

    def _setup_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState, GradientState
        from accelerate.utils import (
            DistributedType,
            GradientAccumulationPlugin,
            ProjectConfiguration,
            set_seed,
        )

        cfg = self.cfg
        # A Trainer owns the process's accelerate state: drop what an earlier in-process run
        # (tests, notebooks, benchmarks) configured; the process group (PartialState) stays.
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
        self.accelerator = acc = Accelerator(
            mixed_precision=cfg.train.mixed_precision,
            # without an accelerator, torchrun's RANK/WORLD_SIZE mean MULTI_CPU (gloo)
            cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()),
            # sync by the step counter only (saved by save_state): a loader that ends early at
            # a preemption must not force an extra optimizer step
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=cfg.train.gradient_accumulation_steps, sync_with_dataloader=False
            ),
            project_config=ProjectConfiguration(project_dir=str(self.run_dir)),
        )
        self.fsdp = acc.distributed_type == DistributedType.FSDP
        if self.fsdp and cfg.train.ema_decay is not None:
            raise ValueError(
                "EMA is not supported with FSDP (parameters are sharded); set train.ema_decay: null"
            )
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            import yaml

            (self.run_dir / "config.yaml").write_text(
                yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
            )
        set_seed(cfg.seed)

    @property
    def data_stage(self) -> str:
        """Which clips and prompts the stage reads (distillation: the stage-2 set)."""
        return "stage1" if self.cfg.stage == "stage1" else "stage2"

    def _setup_data(self) -> None:
        cfg = self.cfg
        self.dataset = CachedClipDataset(
            cfg.data.dataset,
            stage=self.data_stage,
            seed=cfg.seed,
            timestep_shift=cfg.train.timestep_shift,
            text_dropout=cfg.data.text_dropout,
            audio_dropout=cfg.data.audio_dropout,
            min_motion=cfg.data.min_motion,
            use_phase_ids=cfg.data.use_phase_ids,
            context_latents=cfg.data.context_latents,
            context_noise=cfg.train.context_noise,
            sink_gap=cfg.data.sink_gap,
            context_shift=cfg.train.context_shift,
        )
        self.cache_dir = self.dataset.dir
        self.data_hash = data_hash(self.cache_dir)

    def _setup_model(self) -> Any:
        """The model to train (on CPU, not yet prepared), with its trainable parameters set."""
        cfg = self.cfg
        self.base: BaseModel = resolve_base(cfg.model.base, cfg.model.wav2vec)
        model = load_transformer(
            self.base,
            audio_gamma=cfg.model.audio_gamma,
            audio_progressive=cfg.model.audio_progressive,
            time_aware_phases=cfg.model.time_aware_phases,
            frame_time_embedding=cfg.model.frame_time_embedding,
            phase_anchor_embedding=cfg.model.phase_anchor_embedding,
            reference_sink=cfg.model.reference_sink,
        )
        self._check_dims(model)
        if cfg.stage == "stage1":
            if cfg.model.reset_adapter:
                names = [n for n in model.actavatar_modules() if n != "phase_embedding"]
                model.init_actavatar_weights(names)
            model.freeze_backbone()
        else:
            model.load_audio_adapter(cfg.model.adapter)
            if cfg.reset_phase:
                model.init_actavatar_weights(["phase_embedding"])
            model.requires_grad_(True)
        return model

    def _setup_optimizer(self, model: Any) -> None:
        """AdamW over the trainable parameter groups, the LR schedule, accelerate's prepare,
        the save/load hooks and EMA."""
        from diffusers.optimization import get_scheduler

        cfg, acc = self.cfg, self.accelerator
        if cfg.model.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        self.patch_hw = tuple(model.config.patch_size[1:])
        self.phase_pad_id = model.phase_pad_id
        self.reference_sink = bool(model.config.get("reference_sink", False))
        if cfg.data.sink_gap and not self.reference_sink:
            raise ValueError(
                f"{cfg.source or 'config'}: field 'data.sink_gap': the model has no reference "
                "sink (set model.reference_sink: true)"
            )
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        counts: dict[str, int] = {}
        for n, p in self.trainable.items():
            counts[param_group(n)] = counts.get(param_group(n), 0) + p.numel()
        self.trainable_counts = counts

        groups: dict[str, list[torch.nn.Parameter]] = {}
        for n, p in self.trainable.items():
            groups.setdefault(param_group(n), []).append(p)
        optimizer = torch.optim.AdamW(
            [{"params": ps, "name": g} for g, ps in groups.items()],
            lr=cfg.optim.lr,
            betas=tuple(cfg.optim.betas),
            eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
        )
        # accelerate steps a prepared scheduler once per process per optimizer step
        n = acc.num_processes
        scheduler = get_scheduler(
            cfg.optim.scheduler,
            optimizer,
            num_warmup_steps=cfg.optim.warmup_steps * n,
            num_training_steps=cfg.train.max_steps * n,
        )
        acc.register_save_state_pre_hook(self._save_model_hook)
        acc.register_load_state_pre_hook(self._load_model_hook)
        self.model, self.optimizer, self.scheduler = acc.prepare(model, optimizer, scheduler)
        if cfg.train.ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(list(self.trainable.values()), decay=cfg.train.ema_decay)

    def _check_dims(self, model: Any) -> None:
        enc = self.dataset.encoders
        want = {
            "text_dim": model.config.text_dim,
            "audio_in_dim": model.config.audio_in_dim,
            "audio_layers": model.config.audio_layers,
            "z_dim": model.config.in_channels,
        }
        bad = {k: (enc.get(k), v) for k, v in want.items() if enc.get(k) not in (None, v)}
        if bad:
            detail = ", ".join(f"{k}: cache {a} vs model {b}" for k, (a, b) in bad.items())
            raise ValueError(
                f"{self.cache_dir}: cached with encoders that do not fit this model ({detail})"
            )

    @property
    def unwrapped(self) -> Any:
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------------------ state
    def _save_model_hook(self, models: list, weights: list, output_dir: str) -> None:
        """Write the transformer in the diffusers layout (safetensors) instead of accelerate's
        anonymous file; under FSDP accelerate keeps its sharded save (needed to resume) and the
        full weights are gathered separately in `save_checkpoint`."""
        if self.fsdp:
            return
        for model in models:
            if self.accelerator.is_main_process:
                self.accelerator.unwrap_model(model).save_pretrained(
                    Path(output_dir) / "transformer", safe_serialization=True
                )
            if weights:
                weights.pop()

    def _load_model_hook(self, models: list, input_dir: str) -> None:
        if self.fsdp:
            return
        from safetensors.torch import load_file

        folder = Path(input_dir) / "transformer"
        while models:
            model = self.accelerator.unwrap_model(models.pop())
            state: dict[str, torch.Tensor] = {}
            for f in sorted(folder.glob("*.safetensors")):
                state.update(load_file(str(f)))
            model.load_state_dict(state, strict=True)

    def _resume_dir(self) -> Path | None:
        how = self.cfg.train.resume
        if how == "never":
            return None
        if how == "auto":
            found = find_checkpoints(self.run_dir)
            return found[-1] if found else None
        path = Path(how)
        if not (path / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{path}: not a checkpoint of ours (no trainer_state.json)")
        return path

    def _resume(self) -> None:
        ckpt = self._resume_dir()
        if ckpt is None:
            return
        self.accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / "trainer_state.json").read_text())
        self.step = int(state["step"])
        if self.ema is not None and (ckpt / "ema.safetensors").is_file():
            from safetensors.torch import load_file

            shadow = load_file(str(ckpt / "ema.safetensors"))
            self.ema.shadow_params = [shadow[n].clone() for n in self.trainable]
            self.ema.optimization_step = int(state.get("ema_step", self.step))
        self.emit({"event": "resumed", "step": self.step, "path": str(ckpt)})

    def _full_state_dict(self) -> dict[str, torch.Tensor]:
        """Full (gathered) model weights; a collective under FSDP, so call on every process."""
        if self.fsdp:
            return self.accelerator.get_state_dict(self.model)
        return self.unwrapped.state_dict()

    def save_checkpoint(self, metrics: dict[str, Any]) -> Path:
        """Atomic checkpoint: written to `step-N.tmp`, renamed when every process is done."""
        from safetensors.torch import save_file

        acc = self.accelerator
        final = self.run_dir / "checkpoints" / f"step-{self.step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        full = self._full_state_dict() if (self.fsdp or self.cfg.stage == "stage1") else None
        if acc.is_main_process:
            if self.fsdp:
                out = tmp / "transformer"
                out.mkdir(exist_ok=True)
                self.unwrapped.save_config(out)
                save_file(
                    {k: v.contiguous() for k, v in full.items()},
                    str(out / "diffusion_pytorch_model.safetensors"),
                    metadata={"format": "pt"},
                )
            if self.cfg.stage == "stage1":
                self._save_adapter(full, tmp / "audio_adapter.safetensors")
            if self.ema is not None:
                save_file(
                    {
                        n: p.detach().cpu().contiguous()
                        for n, p in zip(self.trainable, self.ema.shadow_params)
                    },
                    str(tmp / "ema.safetensors"),
                    metadata={"format": "pt"},
                )
            (tmp / "trainer_state.json").write_text(
                json.dumps(
                    {
                        "step": self.step,
                        "samples_seen": self.step * self.global_batch,
                        "global_batch": self.global_batch,
                        "ema_step": self.ema.optimization_step if self.ema is not None else None,
                        "metrics": metrics,
                    },
                    indent=1,
                )
            )
            (tmp / "train_config.json").write_text(
                json.dumps(
                    {
                        "config": config_to_dict(self.cfg),
                        "config_hash": config_hash(self.cfg),
                        "data_hash": self.data_hash,
                        "base": {
                            "spec": self.base.spec,
                            "dir": str(self.base.dir),
                            "wav2vec": str(self.base.wav2vec) if self.base.wav2vec else None,
                            "kind": self.base.kind,
                        },
                        "stage": self.cfg.stage,
                        "step": self.step,
                        "trainable": self.trainable_counts,
                        **self.checkpoint_extras(),
                    },
                    indent=1,
                )
            )
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._prune()
        acc.wait_for_everyone()
        if acc.is_main_process:
            event = {
                "event": "checkpoint",
                "step": self.step,
                "path": str(final.resolve()),
                "weights_sha256": model_files_sha256(final / "transformer"),
                "config_hash": config_hash(self.cfg),
                "data_hash": self.data_hash,
                "metrics": metrics,
            }
            if self.cfg.stage == "stage1":
                event["adapter"] = str((final / "audio_adapter.safetensors").resolve())
            self.emit(event)
            plot_loss(self.run_dir / "log.jsonl", self.run_dir / "loss.png", title=self.cfg.name)
        return final

    def checkpoint_extras(self) -> dict[str, Any]:
        """More provenance for `train_config.json` (a stage adds its inputs, e.g. the teacher)."""
        return {}

    def finish_run(self, last_checkpoint: Path | None) -> dict[str, Any]:
        """Called once at the end of `train()` on every process; returns fields for the
        `done` event (a stage may export here)."""
        return {}

    def _save_adapter(self, state: dict[str, torch.Tensor], path: Path) -> None:
        """Stage-1 extraction (same format as `save_audio_adapter`, from a full state dict)."""
        from safetensors.torch import save_file

        from generator.transformer_actavatar import is_audio_adapter_key

        cfg = self.unwrapped.config
        meta = {
            "format": "pt",
            "actavatar_audio_config": json.dumps(
                {k: cfg[k] for k in cfg if k.startswith("audio_")}
            ),
        }
        tensors = {
            k: v.detach().cpu().contiguous() for k, v in state.items() if is_audio_adapter_key(k)
        }
        save_file(tensors, str(path), metadata=meta)

    def _prune(self) -> None:
        keep = self.cfg.train.keep_checkpoints
        if keep is None:
            return
        for old in find_checkpoints(self.run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------------------ data
    @property
    def global_batch(self) -> int:
        c = self.cfg
        return (
            c.data.batch_size * self.accelerator.num_processes * c.train.gradient_accumulation_steps
        )

    def make_dataloader(self, start_step: int, num_steps: int) -> Any:
        """A prepared loader over optimizer steps [start_step, start_step + num_steps)."""
        from torch.utils.data import DataLoader

        cfg = self.cfg
        sampler = BucketBatchSampler(
            [self.dataset.bucket(i) for i in range(len(self.dataset))],
            batch_size=cfg.data.batch_size,
            num_processes=self.accelerator.num_processes,
            seed=cfg.seed,
            start_step=start_step,
            num_steps=num_steps,
            accumulation=cfg.train.gradient_accumulation_steps,
        )
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=partial(
                collate_clips, text_len=cfg.data.text_len, phase_pad_id=self.phase_pad_id
            ),
            num_workers=cfg.data.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
        return self.accelerator.prepare(loader)

    # ------------------------------------------------------------------------------ steps
    def compute_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        with self.accelerator.autocast():
            return flow_matching_loss(
                self.model,
                batch,
                self.cfg.num_clean_frames,
                self.patch_hw,
                reference_sink=self.reference_sink,
            )

    def training_step(self, batches: list[dict[str, Any]]) -> dict[str, float]:
        """One optimizer step over `gradient_accumulation_steps` micro-batches."""
        acc, cfg = self.accelerator, self.cfg
        losses = []
        grad_norm = None
        for batch in batches:
            with acc.accumulate(self.model):
                loss = self.compute_loss(batch)
                acc.backward(loss)
                if acc.sync_gradients:
                    if cfg.debug.dump_grads_step == self.step:
                        self._dump_grads()
                    if cfg.optim.max_grad_norm:
                        grad_norm = acc.clip_grad_norm_(
                            self.model.parameters(), cfg.optim.max_grad_norm
                        )
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach().float())
        if self.ema is not None:
            self.ema.step(list(self.trainable.values()))
        self.step += 1
        mean = acc.reduce(torch.stack(losses).mean(), reduction="mean")
        out = {"loss": float(mean), "lr": float(self.scheduler.get_last_lr()[0])}
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        return out

    def _dump_grads(self) -> None:
        from safetensors.torch import save_file

        if not self.accelerator.is_main_process:
            return
        grads = {
            n: p.grad.detach().float().cpu().contiguous()
            for n, p in self.unwrapped.named_parameters()
            if p.grad is not None
        }
        save_file(grads, str(self.run_dir / f"grads-step-{self.step}.safetensors"))

    # ------------------------------------------------------------------------------ loop
    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Run to `train.max_steps` (or stop after `stop_after` more steps, like a preemption)."""
        cfg = self.cfg
        if not hasattr(self, "accelerator"):
            self.setup()
        end = (
            cfg.train.max_steps
            if stop_after is None
            else min(cfg.train.max_steps, self.step + stop_after)
        )
        self.emit(
            {
                "event": "start",
                "step": self.step,
                "max_steps": cfg.train.max_steps,
                "processes": self.accelerator.num_processes,
                "global_batch": self.global_batch,
                "clips": len(self.dataset),
                "trainable": self.trainable_counts,
                "config_hash": config_hash(cfg),
                "data_hash": self.data_hash,
            }
        )
        loader = self.make_dataloader(self.step, end - self.step)
        it = iter(loader)
        accum = cfg.train.gradient_accumulation_steps
        last: dict[str, float] = {}
        t_start = time.perf_counter()
        total_wait = 0.0
        steps_run = 0
        while self.step < end:
            t0 = time.perf_counter()
            batches = [next(it) for _ in range(accum)]
            wait = time.perf_counter() - t0
            total_wait += wait
            last = self.training_step(batches)
            steps_run += 1
            step_s = time.perf_counter() - t0
            if not math.isfinite(last["loss"]):
                raise FloatingPointError(f"loss is {last['loss']} at step {self.step}")
            if self.step % cfg.train.log_every == 0 or self.step == end:
                self.emit(
                    {
                        "event": "step",
                        "step": self.step,
                        "max_steps": cfg.train.max_steps,
                        **last,
                        "data_wait_s": round(wait, 5),
                        "step_s": round(step_s, 5),
                    }
                )
            if cfg.train.sample_every and self.step % cfg.train.sample_every == 0:
                self.render_samples()
            if self.step % cfg.train.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint(dict(last))
        elapsed = time.perf_counter() - t_start
        summary = {
            "event": "done",
            "step": self.step,
            "finished": self.step >= cfg.train.max_steps,
            "steps_run": steps_run,
            "seconds": round(elapsed, 3),
            "steps_per_s": round(steps_run / elapsed, 4) if elapsed > 0 else None,
            "data_wait_s": round(total_wait, 4),
            "loss": last.get("loss"),
            "run_dir": str(self.run_dir.resolve()),
        }
        ckpts = find_checkpoints(self.run_dir)
        if ckpts:
            summary["checkpoint"] = str(ckpts[-1].resolve())
            if summary["loss"] is None:  # nothing left to run: report the checkpoint's loss
                state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
                summary["loss"] = state.get("metrics", {}).get("loss")
            if cfg.stage == "stage1":
                summary["adapter"] = str((ckpts[-1] / "audio_adapter.safetensors").resolve())
        summary.update(self.finish_run(ckpts[-1] if ckpts else None))
        self.accelerator.wait_for_everyone()
        self.emit(dict(summary))
        self.accelerator.end_training()
        return summary

    # ------------------------------------------------------------------------------ samples
    def render_samples(self) -> list[Path]:
        """Render the first `sample_clips` clips with the current weights (main process only).

        Uses the dataset's clip assets (first frame, 16 kHz audio, prompt) written by the
        dataset builder and the base's VAE/text/audio encoders; writes a contact sheet PNG.
        """
        acc, cfg = self.accelerator, self.cfg
        if not acc.is_main_process:
            acc.wait_for_everyone()
            return []
        written: list[Path] = []
        clips_dir = self.cache_dir.parent / "clips"
        if self.fsdp or not clips_dir.is_dir():
            self.emit(
                {
                    "event": "samples_skipped",
                    "step": self.step,
                    "reason": "FSDP" if self.fsdp else "no clip assets in the dataset",
                }
            )
            acc.wait_for_everyone()
            return written
        import numpy as np
        from PIL import Image

        from generator.train.models import build_pipeline

        model = self.unwrapped
        if self._pipeline is None:
            self._pipeline = build_pipeline(self.base, model)
            self._pipeline.set_progress_bar_config(disable=True)
        out_dir = self.run_dir / "samples"
        out_dir.mkdir(exist_ok=True)
        model.eval()
        try:
            for sid in self.dataset.ids[: cfg.train.sample_clips]:
                folder = clips_dir / sid
                if not (folder / "clip.json").is_file():
                    continue
                meta = json.loads((folder / "clip.json").read_text())
                prompt = _prompt_from_meta(meta) if self.data_stage == "stage2" else meta["caption"]
                audio = _read_wav16k(folder / "audio.wav")
                with torch.no_grad():
                    frames = self._pipeline(
                        image=Image.open(folder / "first.png"),
                        audio=audio,
                        prompt=prompt,
                        num_frames=meta["num_frames"],
                        height=meta["height"],
                        width=meta["width"],
                        num_inference_steps=cfg.train.sample_steps,
                        seed=cfg.seed,
                        fps=meta["fps"],
                        max_sequence_length=cfg.data.text_len,
                    ).frames[0]
                picks = np.linspace(0, len(frames) - 1, 4).round().astype(int)
                sheet = np.concatenate([frames[i] for i in picks], axis=1)
                path = out_dir / f"step-{self.step:07d}-{sid}.png"
                Image.fromarray((np.clip(sheet, 0, 1) * 255).astype(np.uint8)).save(path)
                written.append(path)
        finally:
            model.train()
        self.emit({"event": "samples", "step": self.step, "paths": [str(p) for p in written]})
        acc.wait_for_everyone()
        return written


def _prompt_from_meta(meta: dict[str, Any]) -> Any:
    from generator.render_types import PromptPhase, StructuredPrompt

    p = meta["prompt"]
    return StructuredPrompt(
        base=p["base"],
        phases=tuple(
            PromptPhase(x["text"], float(x["start"]), float(x["end"])) for x in p["phases"]
        ),
        duration=float(p["duration"]),
    )


def _read_wav16k(path: Path) -> Any:
    import wave

    import numpy as np

    with wave.open(str(path)) as wf:
        data = (
            np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        )
        if wf.getnchannels() > 1:
            data = data.reshape(-1, wf.getnchannels()).mean(1)
    return data


def config_summary(cfg: TrainConfig) -> dict[str, Any]:  # pragma: no cover - debugging aid
    return asdict(cfg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m generator.train CONFIG")
