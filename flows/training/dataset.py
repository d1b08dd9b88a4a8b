"""The `build-dataset` flow: talking videos -> annotated 5-s clips -> a sharded latent cache.

The steps live in `flows.training.builder` (the builder), `decode` (ffmpeg) and `motion` (scores);
this module is the Prefect entry point `flows.training.dataset:build_dataset`.
"""

from typing import Any

from prefect import flow

from flows.runtime import progress
from flows.training.builder import DatasetBuilder, dataset_report, prepare
from flows.training.options import DatasetOptions


@flow(name="build-dataset", log_prints=False)
def build_dataset(
    videos: str,
    options: DatasetOptions = DatasetOptions(),  # noqa: B008
) -> dict[str, Any]:
    """Cut, score, transcribe, annotate, record and cache every clip of a folder of videos.

    Args:
        videos: Folder of talking videos with sound.
        options: How clips are cut, scored, annotated and encoded, and where the dataset goes;
            every field is described in the form.
    """
    paths, out_dir = prepare(videos, options)
    builder = DatasetBuilder(paths[0].parent, out_dir, options)
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
        "encoders": options.encoders,
        "motion_threshold": options.motion_threshold,
    }
