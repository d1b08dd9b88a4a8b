"""An interrupted job resumes and renders only the missing segments (in-process flow runs)."""

import pytest
from sqlmodel import select
from support import EXAMPLES

import flows.video.produce as produce
import flows.video.steps as steps
from flows.runtime.settings import get_settings
from flows.video.options import JobOptions
from storage import Job, Segment, session_scope

pytestmark = pytest.mark.slow


class CrashAfterFirst:
    """Wraps the real renderer and fails every segment after the first (a crash mid-job)."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, []

    def __getattr__(self, name):  # the rest of the renderer protocol (last_stats, model_note)
        return getattr(self.inner, name)

    def render(self, request, progress=None):
        self.calls.append(request.index)
        if request.index >= 1:
            raise RuntimeError("simulated crash")
        return self.inner.render(request, progress)


class Counting:
    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, []

    def __getattr__(self, name):  # the rest of the renderer protocol (last_stats, model_note)
        return getattr(self.inner, name)

    def render(self, request, progress=None):
        self.calls.append(request.index)
        return self.inner.render(request, progress)


def test_interrupted_run_resumes_with_only_the_rest(fresh_home, tmp_path, monkeypatch):
    real = steps.get_renderer("animatic")
    no_retry = steps.render_step.with_options(retries=0)
    monkeypatch.setattr(produce, "render_step", no_retry)
    crash = CrashAfterFirst(real)
    monkeypatch.setattr(steps, "get_renderer", lambda *a, **k: crash)
    out = tmp_path / "out"
    options = JobOptions(out=str(out))
    with pytest.raises(Exception, match="simulated crash"):
        produce.produce_video(script=str(EXAMPLES / "hello.md"), options=options)
    assert crash.calls == [0, 1]
    db = get_settings().db_url
    with session_scope(db) as s:
        job = s.exec(select(Job)).one()
        assert job.status == "failed" and "simulated crash" in job.error
        statuses = [x.status for x in s.exec(select(Segment).order_by(Segment.index)).all()]
    assert statuses[0] == "rendered" and set(statuses[1:]) == {"pending"}
    assert not (out / "video.mp4").exists()
    # The failure is recorded by the flow's state hook, with Prefect's traceback in job.log.
    log = (out / "job.log").read_text()
    assert "simulated crash" in log and "Traceback" in log

    counting = Counting(real)
    monkeypatch.setattr(steps, "get_renderer", lambda *a, **k: counting)
    report = produce.produce_video(script=str(EXAMPLES / "hello.md"), options=options)
    total = report["segments"]
    assert counting.calls == list(range(1, total))
    assert report["segments_rendered"] == total - 1 and report["segments_cached"] == 1
    with session_scope(db) as s:
        job = s.exec(select(Job)).one()
        assert job.status == "done" and job.error is None and job.segments_rendered == total
    assert (out / "video.mp4").is_file()
