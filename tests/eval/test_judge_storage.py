from sqlmodel import select

from flows.evaluation.judge import store_with_job
from flows.runtime.settings import get_settings
from storage import Asset, Job, session_scope, sha256_file


def test_judge_report_is_kept_with_the_job_that_made_the_video(fresh_home, tmp_path):
    db = get_settings().db_url
    video = tmp_path / "out" / "video.mp4"
    video.parent.mkdir()
    video.write_bytes(b"not really a video")
    with session_scope(db) as s:
        s.add(Job(id="job1", title="t"))
        s.flush()
        s.add(Asset(job_id="job1", kind="video", path=str(video.resolve()), sha256="x", bytes=18))
    report = {"summary": {"H@S": 0.5}, "phases": []}
    assert store_with_job(video, report, db) == "job1"
    judge = video.with_name("judge.json")
    assert '"H@S": 0.5' in judge.read_text()
    with session_scope(db) as s:
        row = s.exec(select(Asset).where(Asset.job_id == "job1", Asset.kind == "judge")).one()
        assert row.path == str(judge) and row.sha256 == sha256_file(judge)
    # A video that no job produced: nothing is written or recorded.
    other = tmp_path / "elsewhere.mp4"
    other.write_bytes(b"x")
    assert store_with_job(other, report, db) is None
    assert not (tmp_path / "judge.json").exists()
