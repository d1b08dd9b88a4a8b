"""Finishing as its own cached Prefect step after the stitch.

Its cache key is made of what finishing reads (the rendered segments' hashes, the speech track,
the words, the chapters, the brand kit and music contents, the finishing options), never of the
render's own options, so changing the brand, the music, the loudness, the captions or the
chapters re-runs this step only: every segment comes from the render cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from flows.runtime import progress
from flows.runtime.settings import get_settings
from flows.video.captions import write_srt, write_vtt
from flows.video.finish.inputs import FinishInputs, resolve_finishing
from flows.video.steps import CACHED, content_key, retry_unless_input_error, run_cached_state
from planners.schema import Scene, Transcript, Word
from storage import AssetStore, atomic_copy, session_scope

OUTPUT_NAMES = {"poster": "poster.png", "chapters": "chapters.txt"}


@task(name="finish", **CACHED, retries=1, retry_condition_fn=retry_unless_input_error)
def finish_step(key: str, stitched: str, spec: dict) -> dict:
    """Finish the stitched video (brand, music, loudness, captions, chapters, poster); the
    results go to the asset store, so a cached record keeps pointing at them."""
    from flows.video.finish.assemble import FinishSpec, finish_video
    from flows.video.finish.brand import load_brand
    from flows.video.finish.chapters import Chapter

    progress.emit("finish", 0, 1)
    settings = get_settings()
    work = Path(settings.cache_dir) / "finish" / key
    body = work / "stitched.mp4"
    atomic_copy(Path(stitched), body)  # the out folder's file is replaced by the result
    fin = FinishSpec(
        video=body,
        speech=Path(spec["speech"]),
        words=[Word.model_validate(w) for w in spec["words"]],
        width=spec["width"],
        height=spec["height"],
        fps=spec["fps"],
        title=spec["title"],
        brand=load_brand(spec["brand"]) if spec["brand"] else None,
        music=Path(spec["music"]) if spec["music"] else None,
        music_volume=spec["music_volume"],
        loudness=spec["loudness"],
        burn_captions=spec["burn_captions"],
        chapters=[Chapter(**c) for c in spec["chapters"]],
    )
    done = finish_video(fin, work)
    store = AssetStore(settings.assets_dir)
    result: dict[str, Any] = {"report": done.report()}
    for kind, path in (("video", done.video), ("poster", done.poster), ("chapters", done.chapters)):
        if path is not None:
            sha, stored = store.put_file(path)
            result[kind] = str(stored)
            result[f"{kind}_sha256"] = sha
    body.unlink(missing_ok=True)
    progress.emit("finish", 1, 1)
    return result


def finish_spec(
    fin: FinishInputs, *, speech: str, transcript: Transcript, scenes: list[Scene], script: Any
) -> dict:
    """The finishing task's JSON input: chapters placed on the body's clock (an intro shifts
    them when the video is assembled, see `chapters_with_intro`)."""
    from flows.video.finish.chapters import scene_chapters

    same_words = [w.word for w in transcript.words] == script.words
    chapters = (
        scene_chapters(scenes, transcript.words, duration=transcript.duration)
        if fin.chapters and same_words
        else []
    )
    return {
        "speech": speech,
        "words": [w.model_dump(mode="json") for w in transcript.words],
        "width": script.width,
        "height": script.height,
        "fps": script.fps,
        "title": script.title,
        "brand": str(fin.brand) if fin.brand else None,
        "music": str(fin.music) if fin.music else None,
        "music_volume": fin.music_volume,
        "loudness": fin.loudness,
        "burn_captions": fin.burn_captions,
        "chapters": [c.__dict__ for c in chapters],
    }


def finish_outputs(
    inputs: Any,
    *,
    paths: dict[str, Path],
    clip_shas: list[str],
    speech: dict,
    transcript: Transcript,
    force: bool = False,
) -> dict:
    """Run (or reuse) finishing on the stitched `paths["video"]`, replace it with the finished
    video, add the poster and chapter list to `paths`; the finishing part of the job report."""
    fin = resolve_finishing(inputs.script, inputs.options)
    spec = finish_spec(
        fin,
        speech=speech["full"],
        transcript=transcript,
        scenes=inputs.script.scenes,
        script=inputs.script,
    )
    parts = {**spec, "speech": speech["full_sha"], **fin.key_parts()}
    key = content_key("finish", clip_shas, parts)
    step = finish_step.with_options(refresh_cache=True) if force else finish_step
    state = run_cached_state(
        step,
        lambda r: all(Path(r[k]).is_file() for k in ("video", "poster", "chapters") if r.get(k)),
        key=key,
        stitched=str(paths["video"]),
        spec=spec,
    )
    result = state.result()
    out_dir = paths["video"].parent
    atomic_copy(Path(result["video"]), paths["video"])
    for kind, name in OUTPUT_NAMES.items():
        target = out_dir / name
        if result.get(kind):
            paths[kind] = atomic_copy(Path(result[kind]), target)
        else:
            target.unlink(missing_ok=True)
    intro = float(result["report"]["parts"].get("intro") or 0.0)
    if intro > 0:  # the sidecar captions follow the finished video's clock
        shifted = [
            w.model_copy(update={"start": w.start + intro, "end": w.end + intro})
            for w in transcript.words
        ]
        write_srt(shifted, paths["captions_srt"])
        write_vtt(shifted, paths["captions_vtt"])
    script = inputs.script
    return {
        **result["report"],
        "cached": state.name == "Cached",
        "brand": str(fin.brand) if fin.brand else None,
        "loudness_target": inputs.options.loudness,
        "burn_captions": fin.burn_captions,
        "chapters": len(spec["chapters"]),
        "template": (
            {"script": str(script.path), "sha256": script.template_sha, "values": script.variables}
            if script.template_sha
            else None
        ),
    }


def record_finishing(db: str, job_id: str, finishing: dict) -> None:
    """Keep the finishing report (measured loudness, template and values) on the job record."""
    from storage import Job

    with session_scope(db) as s:
        job = s.get(Job, job_id)
        if job is not None:
            job.settings = {**(job.settings or {}), "finishing": finishing}
            s.add(job)
