"""The cached training set: sharded safetensors + an index JSON, read with a resumable sampler.

Layout of a cache folder::

    index.json               {"version", "encoders": {...}, "samples": {id: meta}, "shards": {name: sha256}}
    shard-00000.safetensors  "<id>/latents" (C, F, h, w), "<id>/caption_embeds" (S1, D),
                             "<id>/prompt_embeds" (S2, D), "<id>/phase_ids" (S2,), "<id>/audio" (F_video, L, C_a),
                             "<id>/phase_windows" (max_phases + 2, 2) (optional: time-aware phases)

Text states are stored trimmed to their real tokens (Wan pads with zeros, the collate function
restores that). Shards and the index are published atomically (tmp + rename), so an
interrupted caching run resumes from the last complete shard and never reads a torn file.

Text dropout (for text guidance): a dropped sample gets zero text states *and* the ids of
the inference unconditional branch (`prompting.unconditional_phase_ids`: all base, base-only
windows), so the null text carries no phase pattern. The ids match `ActAvatarPipeline`'s
negative branch; its text states do not by default: the pipeline encodes Wan's negative
prompt there, as Wan samples (a negative condition steered away from, not the trained null).
In the synthetic world, where that string means nothing, zero text is the better negative
(docs/eval/sampling/, issue 21); on real weights that is still to be measured.

Sampling: a deterministic stream of *global micro-batches* per epoch (each from one resolution
bucket, so shapes match), seeded by (seed, epoch). Every sample carries its stream position,
and the noise, timestep and dropout draws are seeded by that position, not by process RNG:
a resumed run, or the same global batch split over N processes, sees exactly the same
noisy inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

__all__ = [
    "CACHE_VERSION",
    "BucketBatchSampler",
    "CacheWriter",
    "CachedClipDataset",
    "collate_clips",
    "find_cache_dir",
    "read_index",
    "shift_sigma",
]

CACHE_VERSION = 1
INDEX = "index.json"


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_cache_dir(path: str | Path) -> Path:
    """The cache folder of a dataset folder (`<dataset>/cache`) or the folder itself."""
    path = Path(path)
    if (path / INDEX).is_file():
        return path
    if (path / "cache" / INDEX).is_file():
        return path / "cache"
    raise FileNotFoundError(
        f"{path}: no latent cache (index.json); build it with `avatar-flow dataset build`"
    )


def read_index(cache_dir: str | Path) -> dict[str, Any]:
    path = Path(cache_dir) / INDEX
    if not path.is_file():
        return {"version": CACHE_VERSION, "encoders": {}, "samples": {}, "shards": {}}
    return json.loads(path.read_text())


class CacheWriter:
    """Append samples to sharded safetensors; `has(id)` lets a rerun skip cached clips."""

    def __init__(
        self, cache_dir: str | Path, shard_size: int = 64, encoders: dict[str, Any] | None = None
    ):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.index = read_index(self.dir)
        if encoders:
            old = self.index.get("encoders") or {}
            if old and old != encoders and self.index["samples"]:
                raise ValueError(
                    f"{self.dir}: cached with other encoders ({old.get('name')}); use a new dataset folder"
                )
            self.index["encoders"] = encoders
        self._tensors: dict[str, torch.Tensor] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def has(self, sample_id: str) -> bool:
        return sample_id in self.index["samples"] or sample_id in self._meta

    def add(self, sample_id: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if "/" in sample_id:
            raise ValueError(f"sample id {sample_id!r} must not contain '/'")
        for key, value in tensors.items():
            self._tensors[f"{sample_id}/{key}"] = value.detach().cpu().contiguous()
        self._meta[sample_id] = dict(meta, keys=sorted(tensors))
        if len(self._meta) >= self.shard_size:
            self.flush()

    def flush(self) -> str | None:
        """Write the buffered samples as one shard and publish the updated index."""
        from safetensors.torch import save_file

        if not self._meta:
            return None
        n = len(self.index["shards"])
        while (self.dir / f"shard-{n:05d}.safetensors").exists():
            n += 1
        name = f"shard-{n:05d}.safetensors"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.dir)
        os.close(fd)
        save_file(
            self._tensors, tmp, metadata={"format": "pt", "avatar_flow_cache": str(CACHE_VERSION)}
        )
        os.replace(tmp, self.dir / name)
        self.index["shards"][name] = _sha256(self.dir / name)
        for sid, meta in self._meta.items():
            self.index["samples"][sid] = dict(meta, shard=name)
        self.index["version"] = CACHE_VERSION
        _atomic_write_text(
            self.dir / INDEX, json.dumps(self.index, indent=1, sort_keys=True) + "\n"
        )
        self._tensors, self._meta = {}, {}
        return name

    def close(self) -> None:
        self.flush()
        if not (self.dir / INDEX).is_file():
            _atomic_write_text(
                self.dir / INDEX, json.dumps(self.index, indent=1, sort_keys=True) + "\n"
            )

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shift_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan's timestep shift, as in its schedulers: sigma = s u / (1 + (s - 1) u)."""
    return shift * u / (1.0 + (shift - 1.0) * u)


class CachedClipDataset(Dataset):
    """Map-style view of a cache for one stage; items are indexed by (sample, stream position).

    Stage 1 reads the brief caption states; stage 2 reads the structured-prompt states with
    their PACA block indices (`phase_ids` is None when `use_phase_ids` is False) and keeps
    only clips selected for stage 2 (motion threshold).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        stage: str = "stage1",
        seed: int = 0,
        timestep_shift: float = 5.0,
        text_dropout: float = 0.0,
        audio_dropout: float = 0.0,
        min_motion: float | None = None,
        use_phase_ids: bool = True,
        context_latents: int = 1,
        context_noise: float = 0.0,
        sink_gap: int = 0,
        context_shift: float = 0.0,
    ):
        self.dir = find_cache_dir(cache_dir)
        self.context_latents = context_latents
        self.context_noise = context_noise
        self.context_shift = context_shift
        self.sink_gap = sink_gap
        self.index = read_index(self.dir)
        self.stage = stage
        self.seed = seed
        self.shift = timestep_shift
        self.text_dropout = text_dropout
        self.audio_dropout = audio_dropout
        self.use_phase_ids = use_phase_ids
        samples = self.index["samples"]
        ids = sorted(samples)
        if stage == "stage2":
            if min_motion is None:
                ids = [i for i in ids if samples[i].get("stage2", True)]
            else:
                ids = [i for i in ids if samples[i].get("motion", 0.0) >= min_motion]
            ids = [i for i in ids if "prompt_embeds" in samples[i]["keys"]]
        self.ids = ids
        if not self.ids:
            raise ValueError(f"{self.dir}: no cached clips for {stage}")
        self._handles: dict[str, Any] = {}

    @property
    def encoders(self) -> dict[str, Any]:
        return self.index.get("encoders", {})

    def __len__(self) -> int:
        return len(self.ids)

    def bucket(self, i: int) -> tuple[int, ...]:
        """Resolution bucket of sample i: the latent shape (C, F, h, w) (batches share it)."""
        return tuple(self.index["samples"][self.ids[i]]["latent_shape"])

    def _handle(self, shard: str):
        from safetensors import safe_open

        h = self._handles.get(shard)
        if h is None:  # opened lazily, per process / data-loader worker
            h = self._handles[shard] = safe_open(str(self.dir / shard), framework="pt")
        return h

    def load(self, sample_id: str) -> dict[str, torch.Tensor]:
        meta = self.index["samples"][sample_id]
        h = self._handle(meta["shard"])
        return {k: h.get_tensor(f"{sample_id}/{k}") for k in meta["keys"]}

    def __getitem__(self, item: tuple[int, int] | int) -> dict[str, Any]:
        idx, position = item if isinstance(item, tuple) else (item, item)
        sid = self.ids[idx]
        t = self.load(sid)
        latents = t["latents"].float()  # (C, F, h, w)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(position))
        noise = torch.randn(latents.shape, generator=g)
        u, drop_text, drop_audio = torch.rand(3, generator=g)
        sigma = shift_sigma(u.clamp(1e-4, 1.0), self.shift)
        windows = None
        audio = t["audio"].float()
        extra: dict[str, Any] = {}
        if self.stage == "stage2":
            text = t["prompt_embeds"]
            phase_ids = t["phase_ids"].long() if self.use_phase_ids else None
            if self.use_phase_ids and "phase_windows" in t:
                windows = t["phase_windows"].float()
            # drawn after the draws above, so the stream of a default run is unchanged
            k_draw, level_draw = torch.rand(2, generator=g)
            if self.sink_gap:
                gap = int(torch.randint(self.sink_gap + 1, (1,), generator=g))
                extra["sink"] = latents[:, :1].clone()
                latents, noise, audio, windows = sink_gap_window(
                    latents, noise, audio, windows, gap, self.sink_gap, sid
                )
            most = max(1, min(self.context_latents, latents.shape[1] - 1))  # >= 1 to generate
            extra["num_context"] = 1 + min(int(k_draw * most), most - 1)
            extra["context_level"] = float(level_draw) * self.context_noise
            if self.context_shift:  # drawn last: the stream without it is unchanged
                size = float(torch.rand(1, generator=g)) * self.context_shift
                extra["context_shift"] = size * torch.randn(latents.shape[0], generator=g)  # (C,)
        else:
            text, phase_ids = t["caption_embeds"], None
        return {
            "id": sid,
            "position": int(position),
            "latents": latents,
            "noise": noise,
            "sigma": sigma,
            "text": text.float(),  # (S, D), real tokens only
            "phase_ids": phase_ids,
            "phase_windows": windows,  # (max_phases + 2, 2) or None
            "audio": audio,  # (F_video, L, C_a)
            "keep_text": float(drop_text >= self.text_dropout),
            "keep_audio": float(drop_audio >= self.audio_dropout),
            # stage 2: num_context (clean context latents), context_level (their noise level),
            # context_shift (C,) (their per-channel offset, with train.context_shift),
            # sink (C, 1, h, w) when the window is cut away from the clip's first frame
            **extra,
        }


def sink_gap_window(
    latents: torch.Tensor,
    noise: torch.Tensor,
    audio: torch.Tensor,
    windows: torch.Tensor | None,
    gap: int,
    max_gap: int,
    clip_id: str = "",
    temporal_stride: int = 4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The training window `gap` latent frames after the clip's first frame (the sink), of
    `F - max_gap` frames so every sample of a batch has the same shape.

    Latents and noise are cut to frames [gap, gap + W); the audio to the window's video frames
    (1 + 4 (W - 1) from video frame 4 gap, the frame the window's first latent ends on, so
    the adapter's 1 + 4k layout holds); phase windows move by -gap and are clipped to [0, W].
    With gap 0 the sink is the window's own first frame (the first segment's layout); with
    gap > 0 the sink is an earlier image of the same person, as in a later segment.
    """
    f = latents.shape[1]
    width = f - max_gap
    if width < 2:
        raise ValueError(
            f"clip {clip_id}: data.sink_gap={max_gap} leaves {width} of its {f} latent frames "
            "(need 2: a context frame and one to generate)"
        )
    latents = latents[:, gap : gap + width]
    noise = noise[:, gap : gap + width]
    start = temporal_stride * gap
    audio = audio[start : start + 1 + temporal_stride * (width - 1)]
    if windows is not None:
        empty = windows[:, 1] <= windows[:, 0]
        windows = (windows - gap).clamp(0, width)
        windows[empty] = 0
    return latents, noise, audio, windows


def collate_clips(
    items: Sequence[dict[str, Any]], text_len: int, phase_pad_id: int
) -> dict[str, Any]:
    """Stack a same-bucket batch; text states zero-padded (or cut) to `text_len` tokens.

    A dropped-text sample (`keep_text` 0) gets zero states, all-base ids and base-only windows:
    exactly the unconditional input of `ActAvatarPipeline` (`unconditional_phase_ids`).
    """
    from generator.prompting import unconditional_phase_ids

    b = len(items)
    dim = items[0]["text"].shape[-1]
    text = torch.zeros(b, text_len, dim)
    phase = torch.full((b, text_len), phase_pad_id, dtype=torch.long)
    has_phase = items[0]["phase_ids"] is not None
    has_windows = has_phase and all(it.get("phase_windows") is not None for it in items)
    windows = torch.stack([_fit_windows(it, phase_pad_id) for it in items]) if has_windows else None
    for i, it in enumerate(items):
        n = min(text_len, it["text"].shape[0])
        if not it["keep_text"]:
            if has_phase:
                phase[i] = unconditional_phase_ids(1, text_len)[0]
            if windows is not None:
                windows[i, 1:] = 0  # base row only
            continue
        text[i, :n] = it["text"][:n]
        if has_phase:
            ids = it["phase_ids"][:n]
            if ids.numel() and int(ids.max()) >= phase_pad_id:
                raise ValueError(
                    f"clip {it['id']}: its prompt has phase {int(ids.max())}; the model supports"
                    f" {phase_pad_id - 1} phases (model.max_phases); rebuild the dataset with"
                    f" --max-phases {phase_pad_id - 1} or raise the model's max_phases"
                )
            phase[i, :n] = ids
    return {
        "ids": [it["id"] for it in items],
        "positions": torch.tensor([it["position"] for it in items]),
        "latents": torch.stack([it["latents"] for it in items]),  # (B, C, F, h, w)
        "noise": torch.stack([it["noise"] for it in items]),
        "sigma": torch.stack([it["sigma"] for it in items]),  # (B,)
        "prompt_embeds": text,  # (B, text_len, D)
        "phase_ids": phase if has_phase else None,  # (B, text_len)
        "phase_windows": windows,  # (B, max_phases + 2, 2) or None
        "audio": torch.stack([it["audio"] for it in items]),  # (B, F_video, L, C_a)
        "audio_mask": torch.tensor([it["keep_audio"] for it in items]),  # (B,)
        **_context_fields(items),
    }


def _context_fields(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stage 2: per-sample clean context latents (B,), their noise level (B,), their offset
    (B, C) with `train.context_shift`, and the sink frames (B, C, 1, h, w) of windows cut by
    `data.sink_gap`."""
    if not all("num_context" in it for it in items):
        return {}
    out = {
        "num_context": torch.tensor([it["num_context"] for it in items], dtype=torch.long),
        "context_level": torch.tensor([it["context_level"] for it in items]),
    }
    if all("context_shift" in it for it in items):
        out["context_shift"] = torch.stack([it["context_shift"] for it in items])  # (B, C)
    if all("sink" in it for it in items):
        out["sink"] = torch.stack([it["sink"] for it in items])  # (B, C, 1, h, w)
    return out


def _fit_windows(item: dict[str, Any], phase_pad_id: int) -> torch.Tensor:
    """The clip's (max_phases_data + 2, 2) windows as the model's (max_phases + 2, 2).

    A dataset built with room for more phases than the model has (`--max-phases 8`, the
    tiny preset's 4) still trains when its clips use no more than the model holds: rows past
    the model's last phase must be empty, and the padding row is the model's.
    """
    w = item["phase_windows"]
    rows = phase_pad_id + 1
    if w.shape[0] == rows:
        return w
    phases = w[:-1]  # base + phase rows, without the dataset's padding row
    dropped = phases[rows - 1 :]
    if bool((dropped[:, 1] > dropped[:, 0]).any()):
        raise ValueError(
            f"clip {item['id']}: its prompt has more phases than the model supports"
            f" ({rows - 2}, model.max_phases); rebuild the dataset with --max-phases {rows - 2}"
            " or raise the model's max_phases"
        )
    out = torch.zeros(rows, 2, dtype=w.dtype)
    n = min(rows - 1, phases.shape[0])
    out[:n] = phases[:n]
    return out


class BucketBatchSampler(Sampler[list[tuple[int, int]]]):
    """Per-device batches of (index, position), covering optimizer steps [start, start+count).

    Each epoch: the indices of every bucket are shuffled (generator seeded by seed + epoch),
    padded by wrapping to whole global micro-batches of `batch_size * num_processes`, and the
    micro-batches are shuffled. Micro-batch c holds stream positions c*G .. c*G+G-1. It is
    yielded as `num_processes` consecutive per-device batches: accelerate's BatchSamplerShard
    hands batch j to process j % num_processes, so process p trains on slice p of every
    global micro-batch, and one process with the whole global batch sees the same samples.
    """

    def __init__(
        self,
        buckets: Sequence[tuple[int, ...]],
        batch_size: int,
        num_processes: int = 1,
        seed: int = 0,
        start_step: int = 0,
        num_steps: int = 1,
        accumulation: int = 1,
    ):
        self.buckets = list(buckets)
        self.batch_size = batch_size
        self.num_processes = num_processes
        self.global_batch = batch_size * num_processes
        self.seed = seed
        self.accumulation = accumulation
        self.start_chunk = start_step * accumulation
        self.num_chunks = max(0, num_steps) * accumulation
        self._epochs: dict[int, list[list[int]]] = {}

    def _epoch(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epochs:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, key in enumerate(self.buckets):
                groups.setdefault(key, []).append(i)
            chunks: list[list[int]] = []
            for key in sorted(groups):
                members = groups[key]
                order = [members[j] for j in torch.randperm(len(members), generator=g).tolist()]
                n = -(-len(order) // self.global_batch) * self.global_batch
                order = [order[j % len(order)] for j in range(n)]
                chunks += [order[j : j + self.global_batch] for j in range(0, n, self.global_batch)]
            perm = torch.randperm(len(chunks), generator=g).tolist()
            self._epochs = {epoch: [chunks[j] for j in perm]}  # keep one epoch in memory
        return self._epochs[epoch]

    def chunk(self, c: int) -> list[tuple[int, int]]:
        """Global micro-batch number c of the stream, as (index, position) pairs."""
        per_epoch = len(self._epoch(0))
        epoch, k = divmod(c, per_epoch)
        return [(idx, c * self.global_batch + j) for j, idx in enumerate(self._epoch(epoch)[k])]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for c in range(self.start_chunk, self.start_chunk + self.num_chunks):
            items = self.chunk(c)
            for p in range(self.num_processes):
                yield items[p * self.batch_size : (p + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.num_chunks * self.num_processes
