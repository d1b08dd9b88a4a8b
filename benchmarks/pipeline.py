"""Wall seconds per second of produced video, per stage and in total.

Runs the production stages on the ~40 s example with the animatic renderer, with models
loaded once (a warm-up on a short sentence first), the way a long-lived worker runs them.
Target: the whole job under 1x real time on a 2-core CPU machine.

    .venv/bin/python benchmarks/pipeline.py [--script examples/product-tour.md] [--json]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--script", default=str(REPO / "examples" / "product-tour.md"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from flows.video.avatar import load_avatar
    from flows.video.options import JobOptions
    from flows.video.produce import plan_request, write_outputs
    from flows.video.render import build_request, get_renderer
    from flows.video.script import parse_script
    from flows.video.segments import plan_segments
    from flows.video.speech import load_piper, prepare_speech, read_wav
    from flows.video.words import resolve_asr_model, transcribe
    from planners import get_planner

    work = Path(tempfile.mkdtemp(prefix="avatar-flow-bench-"))
    # Warm-up: load the voice, the ASR model and the renderer once.
    t = time.perf_counter()
    load_piper()
    warm = prepare_speech(
        text="Warm up.", voice="piper", audio=None, work_dir=work / "warm", max_seconds=60
    )
    transcribe(read_wav(warm.analysis)[0], known_words=["Warm", "up."])
    resolve_asr_model()
    renderer = get_renderer("animatic")
    load_seconds = time.perf_counter() - t

    script = parse_script(args.script)
    from flows.video.inputs import JobInputs

    inputs = JobInputs(
        script=script, options=JobOptions(), avatar_sha="bench", audio_sha=None, input_key="bench"
    )
    stages: dict[str, float] = {}

    t = time.perf_counter()
    speech = prepare_speech(
        text=script.text, voice=script.voice, audio=None, work_dir=work / "speech", max_seconds=600
    )
    stages["speech"] = time.perf_counter() - t

    t = time.perf_counter()
    audio, _ = read_wav(speech.analysis)
    transcript = transcribe(audio, known_words=script.words)
    stages["words"] = time.perf_counter() - t

    t = time.perf_counter()
    plan = get_planner("rule").plan(plan_request(inputs, transcript))
    stages["plan"] = time.perf_counter() - t

    t = time.perf_counter()
    specs = plan_segments(
        transcript.words, transcript.duration, plan, fps=script.fps, max_seconds=5.0
    )
    cuts = [s.end for s in specs[:-1]]
    stages["segments"] = time.perf_counter() - t

    from flows.video.media import encode_frames

    avatar = load_avatar(script.avatar)
    t = time.perf_counter()
    clips = []
    render_only = 0.0
    for spec in specs:
        req = build_request(
            spec,
            words=transcript.words,
            plan=plan,
            audio16k=audio,
            avatar=avatar,
            width=script.width,
            height=script.height,
            seed=script.seed,
            total_duration=transcript.duration,
            cuts=cuts,
            title=script.title,
            context=[],
        )
        t1 = time.perf_counter()
        frames = renderer.render(req)
        render_only += time.perf_counter() - t1
        clips.append(
            encode_frames(frames[: spec.num_frames], spec.fps, work / f"seg{spec.index}.mp4")
        )
    stages["render"] = render_only
    stages["encode"] = time.perf_counter() - t - render_only

    t = time.perf_counter()
    speech_d = {"full": str(speech.full)}
    write_outputs(
        work / "out",
        segments=clips,
        speech=speech_d,
        transcript=transcript,
        plan=plan,
        cuts=cuts,
        title=script.title,
    )
    stages["stitch"] = time.perf_counter() - t

    video_seconds = sum(s.num_frames for s in specs) / script.fps
    total = sum(stages.values())
    rows = {
        k: {"seconds": round(v, 3), "per_video_second": round(v / video_seconds, 4)}
        for k, v in stages.items()
    }
    result = {
        "script": str(args.script),
        "video_seconds": round(video_seconds, 2),
        "resolution": f"{script.width}x{script.height}",
        "segments": len(specs),
        "model_load_seconds": round(load_seconds, 2),
        "stages": rows,
        "total_seconds": round(total, 2),
        "realtime_factor": round(total / video_seconds, 3),
        "target_realtime_factor": 1.0,
        "meets_target": total / video_seconds < 1.0,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{args.script}: {video_seconds:.1f} s of video at {script.width}x{script.height}, "
        f"{len(specs)} segments (models loaded once in {load_seconds:.1f} s)"
    )
    print(f"{'stage':<10}{'seconds':>10}{'s per video s':>16}")
    for k, v in rows.items():
        print(f"{k:<10}{v['seconds']:>10.2f}{v['per_video_second']:>16.3f}")
    print(
        f"{'total':<10}{total:>10.2f}{total / video_seconds:>16.3f}   "
        f"(target < 1.0: {'met' if total / video_seconds < 1.0 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
