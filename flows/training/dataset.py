"""The `build-dataset` flow: talking videos -> annotated 5-s clips -> a sharded latent cache.

The steps live in `flows.training.builder` (the builder), `decode` (ffmpeg) and `motion` (scores);
this module is the Prefect entry point `flows.training.dataset:build_dataset`.
"""

from typing import Any

from prefect import flow

from flows.runtime import progress
from flows.training.builder import DatasetBuilder, dataset_report, prepare


@flow(name="build-dataset", log_prints=False)
def build_dataset(
    videos: str,
    out: str | None = None,
    planner: str = "rule",
    motion_threshold: float = 0.02,
    encoders: str = "preset:tiny",
    wav2vec: str | None = None,
    dwpose: str | None = None,
    fps: int = 25,
    clip_frames: int = 125,
    buckets: list[list[int]] | None = None,
    text_len: int = 512,
    max_phases: int = 8,
) -> dict[str, Any]:
    """Cut, score, transcribe, annotate, record and cache every clip of a folder of videos."""
    paths, out_dir, opts = prepare(
        videos,
        out,
        planner,
        motion_threshold,
        encoders,
        wav2vec,
        dwpose,
        fps,
        clip_frames,
        buckets,
        text_len,
        max_phases,
    )
    builder = DatasetBuilder(paths[0].parent, out_dir, opts)
    try:
        for i, path in enumerate(paths):
            progress.emit("dataset", i, len(paths), path.name)
            builder.counts["videos"] += 1
            builder.process_video(path)
        progress.emit("dataset", len(paths), len(paths), "done")
    finally:
        builder.close()
    return {
        **dataset_report(out_dir),
        **builder.counts,
        "skipped": builder.skipped,
        "encoders": opts.encoders,
        "motion_threshold": opts.motion_threshold,
    }
