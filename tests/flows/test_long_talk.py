"""A long talk costs the same per segment at its end as at its start: the render task gets only
its own words and phases, the job's counters are counted by the database, and the benchmark's
script generator (benchmarks/long_talk.py) writes real prose of the asked length."""

import re
import sys

import numpy as np
from PIL import Image
from support import REPO, render_job

from flows.video.render import build_request
from flows.video.segments import plan_segments
from flows.video.steps import render_key
from planners.schema import BaseBlock, Phase, Plan, Transcript, Word


def _long_job(renderer: str):
    """Ten minutes of words, one every 0.4 s, with a phase every 30 s."""
    words = [Word(word=f"w{i}", start=i * 0.4, end=i * 0.4 + 0.3) for i in range(1500)]
    transcript = Transcript(words=words, duration=600.0)
    phases = [
        Phase(
            action=f"gesture {k}",
            first_word=75 * k,
            last_word=75 * k + 5,
            start=words[75 * k].start,
            end=words[75 * k + 5].end,
        )
        for k in range(20)
    ]
    plan = Plan(planner="t", base=BaseBlock(), phases=phases)
    specs = plan_segments(words, 600.0, plan, fps=25)
    return render_job(transcript, plan, specs, renderer=renderer), specs


def _request(spec, job):
    return build_request(
        spec,
        words=job.transcript.words,
        plan=job.plan,
        audio16k=np.zeros(16000 * 600, dtype=np.float32),
        avatar=Image.new("RGB", (64, 64)),
        width=64,
        height=64,
        seed=0,
        total_duration=job.duration,
        cuts=list(job.cuts),
        title="t",
        context=[],
    )


def test_a_segment_renders_from_its_own_words_with_the_same_key_and_request():
    for renderer in ("animatic", "actavatar"):
        job, specs = _long_job(renderer)
        assert len(specs) > 100
        sizes = []
        for sp in specs:
            own = job.for_segment(sp)
            # The cache key is unchanged, so caches made before the cut still serve.
            assert render_key(renderer, sp, own, "a", "b", None) == render_key(
                renderer, sp, job, "a", "b", None
            )
            a, b = _request(sp, own), _request(sp, job)
            assert a.captions == b.captions and a.captions
            assert a.timeline_phases == b.timeline_phases
            assert own.duration == job.duration and own.cuts == job.cuts
            sizes.append(len(own.transcript.words))
        # A 5-s window holds at most 14 words here, wherever it is in the talk.
        assert max(sizes) <= 14 and len(job.transcript.words) == 1500


def test_the_rendered_count_is_kept_by_the_database(fresh_home):
    from flows.runtime.records import open_job, record_segment_done, record_segments
    from flows.runtime.settings import get_settings
    from storage import Job, session_scope

    db = get_settings().db_url
    job_id = open_job(db, input_key="k", out_dir=str(fresh_home / "out"))
    specs = [
        {"index": i, "start": i * 5.0, "end": i * 5.0 + 5, "num_frames": 125, "render_frames": 125}
        for i in range(4)
    ]
    record_segments(db, job_id, specs)
    for i, status in enumerate(("rendered", "cached", "rendered")):
        record_segment_done(
            db,
            job_id,
            i,
            status=status,
            cache_key=f"k{i}",
            path=f"/p{i}",
            sha256="s",
            seconds=2.0 if status == "rendered" else None,
        )
    with session_scope(db) as s:
        job = s.get(Job, job_id)
        assert (job.segments_total, job.segments_rendered, job.render_seconds) == (4, 3, 4.0)


def _long_talk_module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import long_talk
    finally:
        sys.path.pop(0)
    return long_talk


def _spoken(body: str) -> list[str]:
    lines = [ln for ln in body.splitlines() if not ln.startswith("#")]
    return re.sub(r"\[\[.*?\]\]", " ", "\n".join(lines)).split()


def test_the_benchmark_script_is_ten_minutes_of_prose_with_scenes_and_cues(tmp_path):
    long_talk = _long_talk_module()
    text = long_talk.talk_script(10)
    assert text == long_talk.talk_script(10)  # deterministic
    assert long_talk.talk_script(10, seed=1) != text
    from flows.video.script import parse_script

    path = tmp_path / "talk.md"
    path.write_text(text)
    script = parse_script(path)
    target = 10 * long_talk.WORDS_PER_MINUTE
    assert target <= len(script.words) <= target + 80
    assert script.words == _spoken(text.split("---\n", 2)[2])
    assert len(script.scenes) >= 12 and len(script.cues) >= 20
    assert script.voice == "piper" and script.avatar == REPO / "examples" / "presenter.png"
    assert not any(ch.isdigit() for w in script.words for ch in w)  # every word is speakable
    # Real prose, varied: no paragraph is spoken twice.
    paragraphs = [p for p in text.split("---\n", 2)[2].split("\n\n") if not p.startswith("#")]
    assert len(set(paragraphs)) == len(paragraphs)
    assert len(_spoken(long_talk.talk_body(long_talk.WORDS_PER_MINUTE))) < target / 5


def test_the_benchmark_groups_segments_by_minute_and_fits_the_trend():
    long_talk = _long_talk_module()
    segments = [{"start": 5.0 * i, "end": 5.0 * (i + 1)} for i in range(24)]  # two minutes
    marks = [
        {"wall": 2.0 * i * (1 + 0.01 * i), "cpu": 1.0 * i, "peak": 2**20 * (100 + i), "load": 2.0}
        for i in range(25)
    ]
    rows = long_talk.per_segment(segments, marks)
    minutes = long_talk.per_minute(rows)
    assert [(m["minute"], m["segments"], m["video_seconds"]) for m in minutes] == [
        (1, 12, 60.0),
        (2, 12, 60.0),
    ]
    assert [m["cpu_per_video_second"] for m in minutes] == [0.2, 0.2]
    assert [m["peak_rss_mib"] for m in minutes] == [112.0, 124.0]
    assert long_talk.trend(rows, "cpu") == 0.0  # flat
    assert long_talk.trend(rows, "wall") > 0.3  # each segment slower than the one before


def test_a_segment_reads_only_its_own_audio_and_gets_the_same_samples(tmp_path):
    import wave

    from flows.video.render import request_from_job, slice_audio
    from flows.video.speech import read_wav

    rate, seconds = 16000, 31.7
    samples = np.random.default_rng(0).integers(-20000, 20000, int(rate * seconds), dtype="<i2")
    path = tmp_path / "speech16k.wav"
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(samples.tobytes())
    full, _ = read_wav(path)
    assert np.array_equal(read_wav(path, 100, 50)[0], full[100:150])
    assert len(read_wav(path, len(full) - 10, 50)[0]) == 10  # fewer at the end
    words = [Word(word=f"w{i}", start=i * 0.317, end=(i + 1) * 0.317) for i in range(100)]
    transcript = Transcript(words=words, duration=seconds)
    plan = Plan(planner="t", base=BaseBlock())
    specs = plan_segments(words, seconds, plan, fps=25)
    job = render_job(transcript, plan, specs, analysis=str(path), duration=seconds)
    for sp in specs:
        windowed = request_from_job(sp, job, []).audio
        expected = slice_audio(full, rate, sp.render_start, sp.render_seconds)
        assert windowed.dtype == np.float32 and np.array_equal(windowed, expected)
    assert specs[-1].render_start + specs[-1].render_seconds > seconds  # padded at the end
