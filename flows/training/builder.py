"""The dataset builder behind `build-dataset` (`flows.training.dataset`): talking videos ->
annotated 5-s clips -> a sharded latent cache.

For every video with sound in a folder:
  probe -> pick a resolution bucket (closest aspect) -> decode at `fps`, scaled and centre-cropped
  -> cut into clips of `clip_frames` (4k+1; 125 = 5 s at 25 fps) -> motion score (DWPose hand and
  arm keypoints when its ONNX weights are given, else frame-difference motion energy) ->
  words (WhisperX / faster-whisper, once per video, re-timed per clip) -> annotation through
  the planner's annotate mode (brief caption for stage 1, base + phases for stage 2) ->
  clip row in the database (`storage.clips.Clip`) -> VAE latents, umT5 states (+ token->block
  ids) and Wav2Vec2 features into `<out>/cache` (generator.train).

Dataset folder::

    dataset.json                      settings + per-video status (the resume manifest)
    clips/<clip id>/clip.json         words, annotation, structured prompt, motion, bucket
    clips/<clip id>/first.png, audio.wav   (the trainer's sample renders use them)
    cache/index.json, cache/shard-*.safetensors

Resumable at two levels: a video whose content hash and cut settings are in the manifest is
skipped without decoding; a clip already in the cache index is not encoded again. A second
run over the same folder does no work. The DB rows are the queryable record; the folder is
self-contained (the trainer needs only the folder).
"""

import hashlib
import io
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np

from flows.runtime.errors import InputError
from flows.runtime.settings import get_settings
from flows.training.decode import clips_of, decode_audio16k, decode_frames, pick_bucket, scan_videos
from flows.training.motion import DWPoseMotion, motion_energy
from flows.training.options import DatasetOptions
from flows.video.media import probe
from planners.schema import Word
from storage import atomic_write_text, session_scope, sha256_file
from storage.clips import Clip

DATASET_VERSION = 1


# ------------------------------------------------------------------------------------- words / prompts
def clip_words(words: list[Word], start: float, end: float) -> list[Word]:
    """Words wholly inside [start, end), re-timed to the clip clock."""
    out = []
    for w in words:
        if w.start >= start and w.end <= end:
            out.append(
                w.model_copy(
                    update={"start": round(w.start - start, 3), "end": round(w.end - start, 3)}
                )
            )
    return out


def prompt_dict(annotation: Any) -> dict[str, Any]:
    """The generator's StructuredPrompt (base text + phases on the clip clock) as JSON."""
    return {
        "base": annotation.base.render(),
        "phases": [{"text": p.action, "start": p.start, "end": p.end} for p in annotation.phases],
        "duration": annotation.duration,
    }


def _png_bytes(frame: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format=fmt)
    return buf.getvalue()


def _write_wav16k(path: Path, audio: np.ndarray) -> None:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(16000)
        wf.writeframes(pcm.tobytes())


# ------------------------------------------------------------------------------------- the builder
class DatasetBuilder:
    """Stateful helper behind the flow: manifest, lazily loaded encoders, cache writer, DB."""

    def __init__(self, videos_dir: Path, out: Path, opts: DatasetOptions) -> None:
        self.videos_dir, self.out, self.opts = videos_dir, out, opts
        self.settings = get_settings()
        self.manifest_path = out / "dataset.json"
        self.manifest = self._load_manifest()
        self._encoders: dict[str, Any] | None = None
        self._writer: Any = None
        self._planner: Any = None
        self._dwpose: DWPoseMotion | None = None
        self.counts = {
            "videos": 0,
            "videos_done_before": 0,
            "videos_skipped": 0,
            "clips_new": 0,
            "clips_cached": 0,
            "stage2_new": 0,
            "transcribed": 0,
        }
        self.skipped: dict[str, str] = {}

    def _load_manifest(self) -> dict[str, Any]:
        if self.manifest_path.is_file():
            data = json.loads(self.manifest_path.read_text())
            if data.get("cut_key") != self.opts.cut_key() and data.get("videos"):
                raise InputError(
                    f"{self.out} was built with other cut settings; use a new --out folder",
                    file=str(self.manifest_path),
                )
            return data
        return {
            "version": DATASET_VERSION,
            "cut_key": self.opts.cut_key(),
            "options": self.opts.recorded(),
            "videos": {},
        }

    def _save_manifest(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.manifest_path, json.dumps(self.manifest, indent=1, sort_keys=True) + "\n"
        )

    # lazily built heavy parts (a run with nothing new never loads a model)
    @property
    def encoders(self) -> dict[str, Any]:
        if self._encoders is None:
            from generator.train.models import load_encoders, resolve_base

            try:
                base = resolve_base(self.opts.encoders, self.opts.wav2vec)
            except (FileNotFoundError, ValueError) as exc:
                raise InputError(str(exc), field="encoders") from None
            self._encoders = load_encoders(base)
        return self._encoders

    @property
    def writer(self) -> Any:
        if self._writer is None:
            from generator.train.cache import encoder_signature
            from generator.train.data import CacheWriter

            self._writer = CacheWriter(
                self.out / "cache",
                shard_size=self.opts.shard_size,
                encoders=encoder_signature(self.encoders, self.opts.encoders),
            )
        return self._writer

    @property
    def planner(self) -> Any:
        if self._planner is None:
            import planners

            self._planner = planners.get_planner(self.opts.planner)
        return self._planner

    def motion(self, frames: np.ndarray) -> tuple[float, str]:
        if self.opts.dwpose:
            if self._dwpose is None:
                self._dwpose = DWPoseMotion(self.opts.dwpose)
            return self._dwpose(frames), "dwpose"
        return motion_energy(frames), "frame-diff"

    def cached_ids(self) -> set[str]:
        from generator.train.data import read_index

        return set(read_index(self.out / "cache")["samples"])

    # ---------------------------------------------------------------- one video
    def process_video(self, path: Path) -> None:
        opts = self.opts
        sha = sha256_file(path)
        entry = self.manifest["videos"].get(sha)
        if entry and entry.get("status") in ("done", "skipped"):
            cached = self.cached_ids()
            if all(c in cached for c in entry.get("clips", [])):
                self.counts["videos_done_before"] += 1
                return
        info = probe(path)
        if not info.has_video or not info.has_audio:
            reason = "no video stream" if not info.has_video else "no sound"
            self.skipped[str(path)] = reason
            self.counts["videos_skipped"] += 1
            self.manifest["videos"][sha] = {
                "path": str(path),
                "status": "skipped",
                "reason": reason,
                "clips": [],
            }
            return
        height, width = pick_bucket(info.width, info.height, opts.buckets)
        seconds_per_clip = opts.clip_frames / opts.fps
        if info.duration < seconds_per_clip:
            reason = f"shorter than one clip ({info.duration:.2f} s < {seconds_per_clip:.2f} s)"
            self.skipped[str(path)] = reason
            self.counts["videos_skipped"] += 1
            self.manifest["videos"][sha] = {
                "path": str(path),
                "status": "skipped",
                "reason": reason,
                "clips": [],
            }
            return

        audio = decode_audio16k(path)
        words = self._words(audio)
        clip_ids = []
        for start_frame, frames in clips_of(
            decode_frames(path, opts.fps, height, width), opts.clip_frames
        ):
            cid = hashlib.sha256(f"{sha}:{start_frame}:{opts.cut_key()}".encode()).hexdigest()[:16]
            clip_ids.append(cid)
            self._clip(cid, path, sha, start_frame, frames, audio, words, height, width)
        self.manifest["videos"][sha] = {
            "path": str(path),
            "status": "done",
            "clips": clip_ids,
            "bucket": [height, width],
        }
        self._save_manifest()

    def _words(self, audio: np.ndarray) -> list[Word]:
        from flows.video.words import transcribe

        s = self.settings
        self.counts["transcribed"] += 1
        transcript = transcribe(
            audio,
            known_words=None,
            asr_model=s.asr_model,
            align_model=s.align_model,
            nltk_dir=s.home / "nltk_data",
        )
        return list(transcript.words)

    def _clip(
        self,
        cid: str,
        path: Path,
        sha: str,
        start_frame: int,
        frames: np.ndarray,
        audio: np.ndarray,
        words: list[Word],
        height: int,
        width: int,
    ) -> None:
        opts = self.opts
        start = start_frame / opts.fps
        duration = opts.clip_frames / opts.fps
        folder = self.out / "clips" / cid
        meta_path = folder / "clip.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
        else:
            cwords = clip_words(words, start, start + duration)
            motion, method = self.motion(frames)
            picks = np.linspace(0, len(frames) - 1, opts.annotate_frames).round().astype(int)
            annotation = self.planner.annotate(
                cwords, frames=[_png_bytes(frames[i], "JPEG") for i in picks], duration=duration
            )
            meta = {
                "id": cid,
                "source": str(path),
                "source_sha256": sha,
                "start": start,
                "start_frame": start_frame,
                "num_frames": opts.clip_frames,
                "fps": opts.fps,
                "height": height,
                "width": width,
                "motion": motion,
                "motion_method": method,
                "stage2": bool(motion >= opts.motion_threshold and annotation.phases),
                "caption": annotation.caption,
                "annotation": annotation.model_dump(mode="json"),
                "prompt": prompt_dict(annotation),
                "words": [w.model_dump(mode="json") for w in cwords],
            }
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "first.png").write_bytes(_png_bytes(frames[0]))
            n = int(round(duration * 16000))
            _write_wav16k(folder / "audio.wav", audio[int(round(start * 16000)) :][:n])
            atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
            self.counts["clips_new"] += 1
            self.counts["stage2_new"] += int(meta["stage2"])
        if not self.writer.has(cid):
            self._encode(cid, meta, frames, audio)
        self._record(meta, cached=True)

    def _encode(
        self, cid: str, meta: dict[str, Any], frames: np.ndarray, audio: np.ndarray
    ) -> None:
        from generator.audio import fit_waveform
        from generator.render_types import PromptPhase, StructuredPrompt
        from generator.train.cache import encode_clip

        p = meta["prompt"]
        prompt = StructuredPrompt(
            base=p["base"],
            phases=tuple(PromptPhase(x["text"], x["start"], x["end"]) for x in p["phases"]),
            duration=p["duration"],
        )
        clip_audio = fit_waveform(
            audio[int(round(meta["start"] * 16000)) :], meta["num_frames"], meta["fps"]
        )
        tensors = encode_clip(
            self.encoders,
            frames,
            clip_audio,
            meta["caption"],
            prompt,
            fps=meta["fps"],
            text_len=self.opts.text_len,
            max_phases=self.opts.max_phases,
        )
        self.writer.add(
            cid,
            tensors,
            {
                "latent_shape": list(tensors["latents"].shape),
                "motion": meta["motion"],
                "stage2": meta["stage2"],
                "num_frames": meta["num_frames"],
                "fps": meta["fps"],
                "height": meta["height"],
                "width": meta["width"],
                "caption": meta["caption"],
                "source": meta["source"],
            },
        )
        self.counts["clips_cached"] += 1

    def _record(self, meta: dict[str, Any], cached: bool) -> None:
        with session_scope(self.settings.db_url) as s:
            s.merge(
                Clip(
                    id=meta["id"],
                    dataset=str(self.out.resolve()),
                    source=meta["source"],
                    source_sha256=meta["source_sha256"],
                    start=meta["start"],
                    num_frames=meta["num_frames"],
                    fps=meta["fps"],
                    width=meta["width"],
                    height=meta["height"],
                    motion=meta["motion"],
                    motion_method=meta["motion_method"],
                    stage2=meta["stage2"],
                    caption=meta["caption"],
                    annotation=meta["annotation"],
                    words=meta["words"],
                    cached=cached,
                )
            )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._save_manifest()


def dataset_report(out: Path) -> dict[str, Any]:
    """Totals of a dataset folder (clips, stage-2 clips, cached samples, data hash)."""
    from generator.train.data import read_index

    index = read_index(out / "cache")
    samples = index["samples"]
    report = {
        "dataset": str(out.resolve()),
        "clips": len(samples),
        "stage2_clips": sum(1 for m in samples.values() if m.get("stage2")),
        "shards": len(index["shards"]),
    }
    if samples:
        from generator.train.trainer import data_hash

        report["data_hash"] = data_hash(out / "cache")
    return report


def check_model_folders(options: DatasetOptions) -> None:
    """The encoders and Wav2Vec2 the options name, checked before any video is read (where the
    flow runs: the paths are that machine's)."""
    enc = options.encoders
    if enc.startswith("preset:"):
        if enc != "preset:tiny":
            raise InputError(
                f"unknown preset {enc!r} (only preset:tiny is built offline)", field="encoders"
            )
    elif not (Path(enc).expanduser() / "model_index.json").is_file():
        raise InputError(f"not a pipeline folder (no model_index.json): {enc}", field="encoders")
    w2v = options.wav2vec
    if w2v and not (Path(w2v).expanduser() / "config.json").is_file():
        raise InputError(f"not a Wav2Vec2 folder (no config.json): {w2v}", field="wav2vec")


def prepare(videos: str, options: DatasetOptions) -> tuple[list[Path], Path]:
    """Check everything cheap before any work (the options are checked by their model): the
    folder, its videos, the DWPose model, an existing manifest. The videos and the folder the
    dataset goes to."""
    videos_dir = Path(videos).expanduser()
    out = options.out
    out_dir = Path(out).expanduser() if out else videos_dir.with_name(videos_dir.name + "-dataset")
    if options.dwpose and not Path(options.dwpose).is_file():
        raise InputError(f"DWPose model not found: {options.dwpose}", field="dwpose")
    check_model_folders(options)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out must be a folder, got the file {str(out_dir)!r}", field="out")
    paths = scan_videos(videos_dir)
    manifest = out_dir / "dataset.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        if data.get("cut_key") != options.cut_key() and data.get("videos"):
            raise InputError(
                f"{out_dir} was built with other cut settings; use a new --out folder",
                file=str(manifest),
            )
    return paths, out_dir
