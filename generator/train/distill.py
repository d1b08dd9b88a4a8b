"""Stage `distill`: few-evaluation ActAvatar students from a teacher checkpoint.

Same trainer, accelerate setup, data stream, checkpoints, exact resume and registry events as
stages 1 and 2 (`DistillTrainer` only replaces the model setup and the loss). The student is a
copy of the teacher's transformer - same config, so it keeps the teacher's PACA phase ids, audio
adapter and time-aware phase attention - trained on the stage-2 clips of `data.dataset`.

Two students, one method family:

* **Guidance-distilled** (`distill.mode: guidance`): one forward per step. The student learns
  the teacher's *guided* velocity `v_u + s_t (v_t - v_u) + s_a (v_ta - v_t)` at fixed scales
  (Meng et al. 2023, "On distillation of guided diffusion models", stage 1, with the scale fixed
  instead of embedded). Fixed scales need no new module, so the student's weights load into
  the unchanged `ActAvatarTransformer3DModel`; the scales it was distilled at are recorded in
  the export's `sampling.json` and the pipeline runs it with both scales at 1 (one forward).
  Any solver and step count can then sample it: 3x fewer evaluations at the same step count.
* **Few-step** (`distill.mode: trajectory`, `student_steps` 4 or 8): piecewise trajectory
  distillation. The student's schedule is the `student_steps`-step Euler grid sigma_0 > ... >
  sigma_K = 0 of the pipeline's own flow shift. For a segment k, the input is a training clip
  noised to sigma_k (with the I2V first frame clean, as in stage 2) and the target velocity is
  the chord `(x_teacher(sigma_{k+1}) - x(sigma_k)) / (sigma_{k+1} - sigma_k)`, where
  x_teacher integrates the guided teacher over the segment in `teacher_steps / student_steps`
  Euler sub-steps (uniform in the unshifted time, i.e. the teacher's own step density). One
  Euler step of the student then lands where the guided teacher lands: guidance is folded in
  and each step is one forward, so a clip costs `student_steps` evaluations instead of 120.

Why this method (and not the others the issue lists):
* *Deterministic targets.* The segment end is a function of (clip, noise, segment), which are a
  function of the stream position, so a resumed run sees exactly the losses it would have
  seen (the resume test checks this), and loss curves are comparable across runs. Consistency
  distillation (LCM) needs an EMA target network and a skipping-step schedule; DMD/DMD2 needs a
  second trainable "fake score" 5B network plus a GAN head: 3 models of 5B in memory, an
  adversarial game that is unstable on small data, and no CPU-checkable loss.
* *One run per student.* Progressive distillation (Salimans & Ho 2022) reaches 4 steps from
  40 through log2(10) ~ 3-4 halving rounds, each a run whose teacher is the previous student;
  the piecewise target goes there in one run from the original teacher (PeRFlow, Yan et al.
  2024, is the same idea with a rectification target), and errors do not compound over rounds.
* *What the bench measures stays comparable:* the teacher is sampled through
  `generator.pipeline_actavatar.guided_velocity`, the pipeline's own guidance code.
Known cost: the teacher runs `3 x teacher_steps / student_steps` predictions per training
sample (30 for 4 steps from 40); known limit: inputs are noised data, not the student's own
previous outputs (exposure bias), as in progressive distillation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from generator.train.models import BaseModel, export_pipeline, load_scheduler, resolve_base
from generator.train.trainer import Trainer, model_files_sha256

__all__ = ["DistillTrainer", "segment_targets", "student_sigmas", "unshift"]


def unshift(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Inverse of Wan's shift sigma = s u / (1 + (s - 1) u)."""
    return sigma / (shift - (shift - 1.0) * sigma)


def student_sigmas(steps: int, scheduler_config: Any) -> tuple[torch.Tensor, float]:
    """The student's K+1 sigmas (last 0): exactly the Euler grid the pipeline samples it with."""
    from generator.sampling import make_scheduler

    sched = make_scheduler("euler", scheduler_config)
    sched.set_timesteps(steps)
    return sched.sigmas.float().clone(), float(sched.config.flow_shift)


def segment_targets(
    teacher_velocity: Any,
    xt: torch.Tensor,
    clean: torch.Tensor,
    sigma_start: torch.Tensor,
    sigma_end: torch.Tensor,
    substeps: int,
    shift: float,
    num_clean: int,
) -> torch.Tensor:
    """Chord velocity of the teacher's Euler trajectory from sigma_start to sigma_end (per
    sample), with the clean conditioning frames held at every sub-step.

    `teacher_velocity(x, sigma)` returns the guided velocity for a (B,) sigma."""
    from generator.conditioning import compose_clean_latents

    b = xt.shape[0]
    u0, u1 = unshift(sigma_start, shift), unshift(sigma_end, shift)
    x = xt.float()
    for j in range(substeps):
        ua = u0 + (u1 - u0) * (j / substeps)
        ub = u0 + (u1 - u0) * ((j + 1) / substeps)
        sa = shift * ua / (1.0 + (shift - 1.0) * ua)
        sb = shift * ub / (1.0 + (shift - 1.0) * ub)
        v = teacher_velocity(x, sa)
        x = x + (sb - sa).view(b, 1, 1, 1, 1) * v.float()
        x = compose_clean_latents(x, clean, num_clean)
    return (x - xt.float()) / (sigma_end - sigma_start).view(b, 1, 1, 1, 1)


def _is_pipeline(path: Path) -> bool:
    return (path / "model_index.json").is_file()


class DistillTrainer(Trainer):
    """Trainer for stage `distill` (see the module docstring)."""

    def _setup_model(self) -> Any:
        from generator.prompting import (
            DEFAULT_NEGATIVE_PROMPT,
            encode_structured_prompt,
            unconditional_phase_ids,
        )
        from generator.train.models import load_encoders
        from generator.transformer_actavatar import ActAvatarTransformer3DModel

        cfg, d = self.cfg, self.cfg.distill
        if cfg.data.text_dropout or cfg.data.audio_dropout:
            raise ValueError(
                f"{cfg.source or 'config'}: field 'data.text_dropout'/'data.audio_dropout': "
                "must be 0 for distillation (the teacher's guided target needs text and audio)"
            )
        teacher_root = Path(d.teacher).expanduser()
        tdir = teacher_root / "transformer"
        if not (tdir / "config.json").is_file():
            raise FileNotFoundError(
                f"{teacher_root}: field 'distill.teacher': no transformer/config.json "
                "(give an ActAvatar pipeline folder or a trainer checkpoint folder)"
            )
        # encoders, VAE and scheduler: the teacher's when it is a pipeline folder
        spec = str(teacher_root) if _is_pipeline(teacher_root) else cfg.model.base
        self.base: BaseModel = resolve_base(spec, cfg.model.wav2vec)
        self.teacher_dir = teacher_root
        self.teacher_sha256 = model_files_sha256(tdir)

        def load() -> Any:
            return ActAvatarTransformer3DModel.from_pretrained(tdir, use_safetensors=True)

        student = load()  # a sink teacher's student keeps the sink (`_layout`)
        self._check_dims(student)
        student.requires_grad_(True)
        teacher = load().eval().requires_grad_(False)
        if cfg.train.mixed_precision == "bf16" and self.accelerator.device.type == "cuda":
            teacher = teacher.to(torch.bfloat16)  # a frozen 5B copy: 10 GB instead of 20
        self.teacher = teacher.to(self.accelerator.device)

        if d.negative_prompt == "":
            # training's dropped text (zeros): a base without a text encoder (the bench)
            emb = torch.zeros(1, cfg.data.text_len, teacher.config.text_dim)
        else:
            enc = load_encoders(self.base)
            neg = DEFAULT_NEGATIVE_PROMPT if d.negative_prompt is None else d.negative_prompt
            with torch.no_grad():
                emb, _ = encode_structured_prompt(
                    neg,
                    enc["tokenizer"],
                    enc["text_encoder"],
                    max_sequence_length=cfg.data.text_len,
                    max_phases=teacher.config.max_phases,
                )
            del enc
        # the pipeline's negative branch: all-base ids (as training's dropped text)
        ids = unconditional_phase_ids(1, emb.shape[1])
        device = self.accelerator.device
        self.negative = (emb.float().to(device), ids.to(device))
        sched_cfg = load_scheduler(self.base).config
        self.sched_config = dict(sched_cfg)
        self.sigmas, self.shift = student_sigmas(d.student_steps, sched_cfg)
        self.substeps = max(1, round(d.teacher_steps / d.student_steps))
        return student

    # ------------------------------------------------------------------------------ loss
    def _segments(self, positions: torch.Tensor) -> torch.Tensor:
        """Segment index per sample, a pure function of (seed, stream position)."""
        out = []
        for p in positions.tolist():
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + int(p) + 7_777_777)
            out.append(int(torch.randint(self.cfg.distill.student_steps, (1,), generator=g)))
        return torch.tensor(out, dtype=torch.long)

    def _layout(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(latents, noise, clean leading frames): `[sink | clip]` for a reference-sink teacher,
        the same layout stage 2 trained it on (`losses.sink_layout`), so teacher and student
        see the avatar's frame held clean in front, as the pipeline renders."""
        from generator.conditioning import SINK_FRAMES
        from generator.train.losses import sink_layout

        latents, noise = batch["latents"].float(), batch["noise"].float()
        num_clean = self.cfg.num_clean_frames
        if self.reference_sink:
            latents, noise = sink_layout(latents, noise, batch.get("sink"))
            num_clean += SINK_FRAMES
        return latents, noise, num_clean

    def teacher_velocity(
        self,
        batch: dict[str, Any],
        x: torch.Tensor,
        sigma: torch.Tensor,
        num_clean: int | None = None,
    ):
        from generator.conditioning import SINK_FRAMES, clean_frame_mask, token_timesteps
        from generator.pipeline_actavatar import Conditioning, Guidance, guided_velocity

        d = self.cfg.distill
        b, _, f, h, w = x.shape
        if num_clean is None:  # x in `_layout`'s layout: the sink, when there is one, counts
            num_clean = self.cfg.num_clean_frames + (SINK_FRAMES if self.reference_sink else 0)
        mask = clean_frame_mask(f, num_clean, b, device=x.device)
        tpf = (h // self.patch_hw[0]) * (w // self.patch_hw[1])
        ts = token_timesteps(sigma.float() * 1000.0, mask, tpf)
        neg, neg_ids = self.negative
        ids = batch["phase_ids"]
        cond = Conditioning(
            prompt_embeds=batch["prompt_embeds"].float(),
            phase_ids=ids,
            negative_prompt_embeds=neg,
            negative_phase_ids=None if ids is None else neg_ids,
            audio_embeds=batch["audio"].float(),
            phase_windows=batch.get("phase_windows"),
        )
        guidance = Guidance(d.guidance_scale, d.audio_guidance_scale, batched=d.teacher_batched)
        return guided_velocity(self.teacher, x, ts, cond, guidance)

    def compute_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        from generator.train.losses import noisy_inputs

        d = self.cfg.distill
        latents, noise, num_clean = self._layout(batch)
        if d.mode == "guidance":
            s0 = batch["sigma"].float()
        else:
            k = self._segments(batch["positions"].cpu())
            s0 = self.sigmas[k].to(latents.device)
            s1 = self.sigmas[k + 1].to(latents.device)
        xt, ts, mask = noisy_inputs(latents, noise, s0, num_clean, self.patch_hw)
        with torch.no_grad(), self.accelerator.autocast():
            if d.mode == "guidance":
                target = self.teacher_velocity(batch, xt, s0, num_clean)
            else:
                target = segment_targets(
                    lambda x, s: self.teacher_velocity(batch, x, s, num_clean),
                    xt,
                    latents,
                    s0,
                    s1,
                    self.substeps,
                    self.shift,
                    num_clean,
                )
        with self.accelerator.autocast():
            pred = self.model(
                xt,
                ts,
                batch["prompt_embeds"].float(),
                audio_embeds=batch["audio"].float(),
                phase_ids=batch["phase_ids"],
                phase_windows=batch.get("phase_windows"),
                return_dict=False,
            )[0]
        err = (pred.float() - target.float()) ** 2
        weight = mask[:, None, :, None, None].expand_as(err)
        return (err * weight).sum() / weight.sum().clamp_min(1.0)

    # ------------------------------------------------------------------------------ export
    def student_record(self) -> dict[str, Any]:
        """What `sampling.json` says about the student (how the pipeline must run it)."""
        d = self.cfg.distill
        trajectory = d.mode == "trajectory"
        steps = d.student_steps if trajectory else d.teacher_steps
        return {
            "mode": d.mode,
            "steps": steps,
            "solver": "euler" if trajectory else "unipc",
            "guidance_scale": 1.0,
            "audio_guidance_scale": 1.0,
            "folded_guidance": {
                "guidance_scale": d.guidance_scale,
                "audio_guidance_scale": d.audio_guidance_scale,
            },
            "evaluations_per_clip": steps,
            "teacher": str(self.teacher_dir.resolve()),
            "teacher_sha256": self.teacher_sha256,
            "teacher_steps": d.teacher_steps,
        }

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"distill": self.student_record()}

    def finish_run(self, last_checkpoint: Path | None) -> dict[str, Any]:
        """Export the student as a pipeline folder with its `sampling.json`, and list it in
        the teacher's `sampling.json` (so `--fast` on the teacher finds it)."""
        from generator.sampling import read_sampling_file, write_sampling_file

        if not self.cfg.distill.export or last_checkpoint is None:
            return {}
        out = self.run_dir / "pipeline"
        record = {**self.student_record(), "checkpoint": str(last_checkpoint.resolve())}
        if self.accelerator.is_main_process:
            export_pipeline(last_checkpoint / "transformer", out, self.base)
            write_sampling_file(out, {"student": record})
            if _is_pipeline(self.teacher_dir):
                data = read_sampling_file(self.teacher_dir) or {}
                data.pop("version", None)
                entries = [s for s in data.get("students", []) if s["path"] != str(out.resolve())]
                entries.append(
                    {
                        "path": str(out.resolve()),
                        "mode": record["mode"],
                        "steps": record["steps"],
                        "evaluations_per_clip": record["evaluations_per_clip"],
                    }
                )
                data["students"] = entries
                write_sampling_file(self.teacher_dir, data)
        self.accelerator.wait_for_everyone()
        return {"pipeline": str(out.resolve()), "student": record}
