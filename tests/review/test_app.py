"""The review app's HTTP API on a job made in the test: files, edits, versions, safety."""

import os

import pytest
from review_helpers import CUE

from planners.validation import validate_plan
from storage.plan_versions import get_plan_version, list_plan_versions


def rows(plan: dict) -> list[dict]:
    return [{k: p[k] for k in ("action", "first_word", "last_word")} for p in plan["phases"]]


def edit_of(plan: dict, phases: list[dict] | None = None, **base) -> dict:
    return {
        "base": {**plan["base"], **base},
        "phases": phases if phases is not None else rows(plan),
    }


def test_job_info_lists_words_segments_and_the_plan_as_version_1(client, fake_job):
    info = client.get("/api/job").json()
    assert len(info["words"]) == 30 and info["words"][2] == {
        "word": "word2",
        "start": 0.8,
        "end": 1.1,
        "score": None,
        "interpolated": False,
    }
    assert info["cues"] == [{"text": CUE, "word_index": 2}]
    assert [s["index"] for s in info["segments"]] == [0, 1, 2]  # 12 s in <= 5-s segments
    assert info["version"]["number"] == 1 and info["version"]["source"] == "planner"
    assert rows(info["plan"]) == rows(fake_job["plan"])


@pytest.mark.parametrize(
    "url",
    [
        "/media/../../etc/passwd",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media/..%2f..%2fetc%2fpasswd",
        "/media//etc/passwd",
        "/media/plans/../../../etc/passwd",
        "/media/words.json/../../script.md",
        "/media/script.md",
        "/media/job.log",
        "/static/../app.py",
        "/static/%2e%2e%2fapp.py",
        "/static/index.html/../../job.py",
    ],
)
def test_nothing_but_the_jobs_files_is_served(client, url):
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code, r.content[:80])


def test_the_jobs_own_files_are_served_with_byte_ranges(client, fake_job):
    video = (fake_job["out"] / "video.mp4").read_bytes()
    assert client.get("/media/video.mp4").content == video
    part = client.get("/media/video.mp4", headers={"Range": "bytes=4-9"})
    assert part.status_code == 206 and part.content == video[4:10]
    assert client.get("/media/captions.vtt").text == "WEBVTT\n"
    assert "avatar-flow review" in client.get("/").text


def test_a_symlink_out_of_the_job_folder_is_not_followed(client, fake_job, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (fake_job["out"] / "timeline.png").symlink_to(secret)
    assert client.get("/media/timeline.png").status_code == 404


def test_editing_a_phase_reports_the_segments_it_touches(client, fake_job):
    phases = rows(fake_job["plan"])
    phases[1] = {"action": "counts on the fingers of one hand", "first_word": 18, "last_word": 21}
    r = client.post("/api/validate?parent=1", json=edit_of(fake_job["plan"], phases)).json()
    assert r["errors"] == []
    assert r["affected"] == [1]  # words 18..21 = 7.2-8.7 s, inside segment 2 of 3
    assert [p["source"] for p in r["plan"]["phases"]] == ["cue", "edit"]
    assert (r["plan"]["phases"][1]["start"], r["plan"]["phases"][1]["end"]) == (7.2, 8.7)


def test_validation_errors_are_the_validators_own_and_point_at_rows(client, fake_job):
    from flows.video.given_plan import plan_from_data
    from orchestrator.review.job import open_job

    phases = rows(fake_job["plan"])
    phases[1] = {"action": "nods gently", "first_word": 20, "last_word": 20}  # 0.3 s
    phases.append({"action": "shrugs with both shoulders", "first_word": 21, "last_word": 25})
    edit = edit_of(fake_job["plan"], phases, mood="")
    r = client.post("/api/save", json={**edit, "parent": 1, "author": "ann"})
    assert r.status_code == 422
    errors = r.json()["errors"]
    job = open_job(str(fake_job["out"]))
    plan, expected = plan_from_data(r.json()["plan"], job.request)
    assert expected == validate_plan(plan, job.request)  # the planner's validator, verbatim
    assert [e["message"] for e in errors] == expected
    by_message = {e["message"]: e for e in errors}
    assert by_message["base.mood is empty"]["field"] == "mood"
    short = next(m for m in by_message if "shorter than min_phase_seconds" in m)
    assert short.startswith("phases[1] (words 20..20, 'nods gently'): lasts 0.30 s")
    assert by_message[short]["phases"] == [1]
    assert len(list_plan_versions(fake_job["db"], "fakejob00001")) == 1  # nothing saved


def test_save_makes_a_new_version_and_keeps_the_old_one(client, fake_job):
    phases = rows(fake_job["plan"])
    phases[1]["action"] = "places a hand on the chest"
    r = client.post(
        "/api/save", json={**edit_of(fake_job["plan"], phases), "parent": 1, "author": "ann"}
    )
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    assert (v["number"], v["parent"], v["author"], v["source"]) == (2, 1, "ann", "review")
    assert v["diff"] == ["phases[1]: action 'nods gently' -> 'places a hand on the chest'"]
    assert r.json()["affected"] == [1]
    old = client.get("/api/versions/1").json()
    assert old["plan"]["phases"][1]["action"] == "nods gently"
    assert [x["number"] for x in client.get("/api/versions").json()] == [2, 1]
    assert get_plan_version(fake_job["db"], "fakejob00001", 2).plan["phases"][1]["action"] == (
        "places a hand on the chest"
    )
    # The version is also a plan file `run --plan` takes.
    assert (fake_job["out"] / "plans" / "v0002.json").is_file()


def test_an_edit_from_a_stale_tab_is_refused_not_lost_silently(client, fake_job):
    tab_a, tab_b = rows(fake_job["plan"]), rows(fake_job["plan"])
    tab_b[1]["action"] = "raises the right hand"
    ok = client.post(
        "/api/save", json={**edit_of(fake_job["plan"], tab_b), "parent": 1, "author": "bob"}
    )
    assert ok.status_code == 200
    tab_a[1]["action"] = "shrugs with both shoulders"
    r = client.post(
        "/api/save", json={**edit_of(fake_job["plan"], tab_a), "parent": 1, "author": "ann"}
    )
    assert r.status_code == 409
    assert r.json()["detail"].startswith("plan version 2 was saved by bob at ")
    assert r.json()["detail"].endswith("reload to see it (this edit was not saved)")
    saved = [
        v.plan["phases"][1]["action"] for v in list_plan_versions(fake_job["db"], "fakejob00001")
    ]
    assert saved == ["nods gently", "raises the right hand"]


def test_writes_from_another_origin_or_host_are_refused(client, fake_job):
    body = {**edit_of(fake_job["plan"]), "parent": 1}
    r = client.post("/api/save", json=body, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    same = client.post("/api/validate", json=body, headers={"Origin": "http://testserver"})
    assert same.status_code == 200
    # DNS rebinding: a page served as evil.example that resolves to 127.0.0.1.
    assert client.get("/api/job", headers={"Host": "evil.example"}).status_code == 400


def test_only_loopback_binds_without_an_explicit_host():
    from flows.runtime.errors import InputError
    from orchestrator.review.serve import bind_settings, exposure_warning

    assert bind_settings(None, explicit=False)[0] == "127.0.0.1"
    assert bind_settings("::1", explicit=False)[2] is None
    with pytest.raises(InputError, match="refusing to listen on 0.0.0.0: not a loopback address"):
        bind_settings("0.0.0.0", explicit=False)
    host, allowed, warning = bind_settings("0.0.0.0", explicit=True)
    assert (host, allowed) == ("0.0.0.0", ["*"]) and warning
    text = exposure_warning("0.0.0.0", 8765)
    for exposed in ("video and audio", "save plan versions", "start renders", "no login"):
        assert exposed in text


def test_asking_the_planner_without_one_configured_says_how(client, fake_job):
    assert "AVATAR_FLOW_LLM_BASE_URL" not in os.environ
    r = client.post("/api/propose?parent=1", json={**edit_of(fake_job["plan"]), "phase": 1})
    assert r.status_code == 409 and "AVATAR_FLOW_LLM_BASE_URL" in r.json()["detail"]


def test_a_job_is_opened_by_folder_or_id_and_a_wrong_target_is_one_line(fake_job, tmp_path):
    from flows.runtime.errors import InputError
    from orchestrator.review.job import open_job

    assert open_job("fakejob00001").out_dir == open_job(str(fake_job["out"])).out_dir
    with pytest.raises(InputError, match=r"no job recorded for the folder .*; run `avatar-flow"):
        open_job(str(tmp_path))
    with pytest.raises(InputError, match="'nope' is neither an output folder nor a job id"):
        open_job("nope")
    (fake_job["out"] / "video.mp4").unlink()
    with pytest.raises(InputError, match="has no finished output"):
        open_job("fakejob00001")


def test_preview_and_render_reuse_the_jobs_options_but_never_force_or_call_its_webhook(fake_job):
    from orchestrator.review import runs
    from orchestrator.review.job import open_job
    from storage import Job, session_scope

    stored = {
        "renderer": "actavatar",
        "checkpoint": "/ckpt/actavatar",
        "segment_seconds": 4.5,
        "force": True,
        "webhook": "https://example.org/hook",
        "out": "somewhere/else",
    }
    with session_scope(fake_job["db"]) as s:
        row = s.get(Job, "fakejob00001")
        row.settings = {"options": stored, "fps": 25}
        row.renderer = "actavatar"
    job = open_job("fakejob00001")
    assert job.segment_seconds == 4.5  # the job's own segment length for validation and cuts
    out = fake_job["out"]
    preview = runs.flow_parameters(
        job, out=str(out / "preview"), renderer="animatic", plan="/p/v0002.json", webhook=None
    )
    assert preview["script"] == str(fake_job["script"])
    options = preview["options"]
    assert {k: options[k] for k in ("out", "renderer", "checkpoint", "segment_seconds")} == {
        "out": str(out / "preview"),
        "renderer": "animatic",
        "checkpoint": "/ckpt/actavatar",
        "segment_seconds": 4.5,
    }
    assert (options["plan"], options["force"]) == ("/p/v0002.json", False)
    assert "webhook" not in options
    render = runs.flow_parameters(job, out=str(out / "final"), renderer="actavatar", plan="/p.json")
    assert render["options"]["webhook"] == "https://example.org/hook"  # the job's own callback
    assert render["options"]["force"] is False
    # The job's continuity (issue 20): its segments as the final render cuts them (latent
    # hand-off overlaps), and the final render continues in the job's mode; the animatic
    # preview, which cannot take latents, runs its own.
    assert job.latent and job.overlap == 1
    for mode in ("latent", "pixels"):
        with session_scope(fake_job["db"]) as s:
            row = s.get(Job, "fakejob00001")
            row.settings = {"options": {**stored, "continuity_mode": mode}, "fps": 25}
        job = open_job("fakejob00001")
        assert job.latent == (mode == "latent")
        final = runs.flow_parameters(job, out=str(out / "final"), renderer="actavatar")
        assert final["options"]["continuity_mode"] == mode
        preview = runs.flow_parameters(job, out=str(out / "preview"), renderer="animatic")
        assert preview["options"].get("continuity_mode") in (None, "pixels")


def test_one_run_at_a_time_and_a_failure_is_one_line_on_the_run():
    import threading
    import time

    from flows.runtime.errors import InputError
    from orchestrator.review.runs import Busy, Run, RunManager

    manager, release = RunManager(), threading.Event()
    first = manager.start(Run(kind="preview", version=2), lambda r: release.wait(5) and {"ok": 1})
    with pytest.raises(Busy, match=r"a preview is still running \(started \d\d:\d\d:\d\d\)"):
        manager.start(Run(kind="render", version=2), lambda r: {})
    release.set()
    while first.state == "running":
        time.sleep(0.01)
    assert (first.state, first.result) == ("done", {"ok": 1})

    def bad(run):
        raise InputError("phases[0] (words 1..2, 'x'): lasts 0.20 s", file="v0003.json")

    failed = manager.start(Run(kind="render", version=3), bad)
    while failed.state == "running":
        time.sleep(0.01)
    assert failed.state == "failed"
    assert failed.error == "v0003.json: phases[0] (words 1..2, 'x'): lasts 0.20 s"
    assert manager.get(failed.id) is failed


def test_the_page_never_gets_the_jobs_stored_options(client, fake_job):
    job = client.get("/api/job").json()["job"]
    assert set(job) == {"id", "status", "title", "out_dir", "renderer", "planner", "updated_at"}


def test_serve_warns_what_an_explicit_host_exposes_and_refuses_an_implicit_one(
    fake_job, monkeypatch, capsys
):
    import uvicorn

    from flows.runtime.errors import InputError
    from orchestrator.review.serve import serve

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: calls.append(host))
    with pytest.raises(InputError, match="pass --host 0.0.0.0 explicitly"):
        serve(str(fake_job["out"]), host="0.0.0.0", port=9)
    assert calls == []  # refused before anything listens
    serve(str(fake_job["out"]), port=9)
    serve(str(fake_job["out"]), host="0.0.0.0", port=9, explicit_host=True)
    assert calls == ["127.0.0.1", "0.0.0.0"]
    err = capsys.readouterr().err
    assert err.count("warning:") == 1
    assert "listens on 0.0.0.0:9, not only on this computer" in " ".join(err.split())
