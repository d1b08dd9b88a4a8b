"""The review loop in a real browser: headless Chromium (Debian's package) driven by Playwright.

A real job (Piper voice, Whisper words, rule plan, animatic) is opened with `avatar-flow
review`; the test moves a phase to other words on the page, changes its action, saves,
previews, and checks the database, which segments were re-rendered, the pixels of the new
video, and that the old version is still readable. Set UPDATE_REVIEW_SCREENSHOT=1 to
write the page's screenshot to docs/review.png (the README shows it).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from review_helpers import settled
from support import EXAMPLES, REPO

pytestmark = pytest.mark.slow
NEW_ACTION = "counts on the fingers of one hand"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AVATAR_FLOW_"))}
    env.update(
        AVATAR_FLOW_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    """A finished hello job and `avatar-flow review` serving it on 127.0.0.1."""
    home = tmp_path_factory.mktemp("review")
    out = home / "out"
    env = _env(home)
    cli = [sys.executable, "-m", "orchestrator.cli"]
    run = subprocess.run(
        [*cli, "run", str(EXAMPLES / "hello.md"), "--out", str(out), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    port = _free_port()
    log = (home / "review.log").open("w")
    server = subprocess.Popen(
        [*cli, "review", str(out), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/api/job", timeout=5).read()
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                raise AssertionError((home / "review.log").read_text()[-3000:]) from None
            time.sleep(0.5)
    yield {"home": home, "out": out, "url": url, "report": report, "env": env}
    server.terminate()
    server.wait(timeout=30)
    log.close()


def _api(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


def test_move_a_phase_save_preview_rerenders_only_its_segment(review, browser, tmp_path):
    from sqlmodel import select

    from storage import Segment, session_scope, sqlite_url
    from storage.plan_versions import get_plan_version, list_plan_versions

    url, out = review["url"], review["out"]
    job_id = review["report"]["job_id"]
    db = sqlite_url(review["home"] / "avatar-flow.db")
    info = _api(url + "/api/job")
    words, segments = info["words"], info["segments"]
    original = info["plan"]
    assert len(segments) == 2 and len(original["phases"]) == 2
    # The phase to move lies in the last segment; the first segment has the cue phase.
    seg0_end = segments[1]["start"]
    moved = original["phases"][1]
    assert words[moved["first_word"]]["start"] >= seg0_end
    # New words: a 1-2.5 s range in the last segment that differs from the current one.
    candidates = [
        (a, b)
        for a in range(len(words))
        for b in range(a, len(words))
        if words[a]["start"] >= seg0_end + 0.01
        and 1.0 <= words[b]["end"] - words[a]["start"] <= 2.5
        and (a, b) != (moved["first_word"], moved["last_word"])
    ]
    first, last = candidates[0]
    old_video = tmp_path / "before.mp4"
    shutil.copy(out / "video.mp4", old_video)

    page = browser.new_page(viewport={"width": 1400, "height": 780})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    settled(page)
    assert page.inner_text("#version-label") == "v1"

    # Timeline -> video: clicking a word or a phase seeks the video there.
    page.click(f'.word[data-word="{first}"]')
    settled(page)
    t = page.evaluate("document.querySelector('video').currentTime")
    assert abs(t - words[first]["start"]) < 0.05
    # Video -> timeline: the playhead follows the video's time.
    page.evaluate("v => document.querySelector('video').currentTime = v", 2.0)
    page.wait_for_function(
        "Math.abs(+document.querySelector('#playhead').dataset.time - 2.0) < 0.05"
    )
    settled(page)

    # Dragging the phase's body on the timeline snaps it to words (same number of words).
    box = page.locator('.phase[data-phase="1"]').bounding_box()
    pps = page.evaluate("S.pps")
    shift = words[moved["first_word"] - 2]["start"] - words[moved["first_word"]]["start"]
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + shift * pps, box["y"] + 10, steps=5)
    page.mouse.up()
    settled(page)
    row = page.locator('tr.phase-row[data-index="1"]')
    span = moved["last_word"] - moved["first_word"]
    assert row.locator("select.first").input_value() == str(moved["first_word"] - 2)
    assert row.locator("select.last").input_value() == str(moved["first_word"] - 2 + span)

    # A second tab opened on version 1 (for the stale-edit check below).
    tab2 = browser.new_page()
    tab2.goto(url)
    settled(tab2)

    # Move the phase to other words with the word pickers and change its action.
    for action in (
        lambda: row.locator("select.last").select_option(str(last)),
        lambda: row.locator("select.first").select_option(str(first)),
        lambda: row.locator("select.last").select_option(str(last)),
        lambda: row.locator("input.action").fill(NEW_ACTION),
    ):
        action()
        settled(page)
    assert page.is_enabled("#save")
    assert page.locator('.seg[data-segment="1"].affected').count() == 1
    assert page.locator(".seg.affected").count() == 1  # only the last segment changes
    page.click("#save")
    settled(page)
    assert page.inner_text("#version-label") == "v2"

    # The stale tab's edit is refused with a message and nothing is overwritten.
    tab2.locator('tr.phase-row[data-index="1"] input.action').fill("raises the right hand")
    settled(tab2)
    assert tab2.is_enabled("#save")
    tab2.click("#save")
    settled(tab2)
    assert tab2.locator("#message.error").count() == 1
    stale = tab2.inner_text("#message")
    assert "plan version 2 was saved by" in stale and "this edit was not saved" in stale
    tab2.close()

    # Preview: the animatic re-renders the saved version, only the touched segment.
    page.click("#preview")
    settled(page, timeout=300_000)  # the run, its polls, the reload and the new video's load
    assert page.inner_text("#run-status") == "done: 1 of 2 segments re-rendered, 1 reused"
    chips = page.locator("#segment-results .chip")
    assert [chips.nth(i).get_attribute("data-status") for i in range(2)] == ["cached", "rendered"]
    with session_scope(db) as s:
        rows = s.exec(select(Segment).where(Segment.job_id == job_id)).all()
        statuses = sorted((r.index, r.status) for r in rows)
    assert statuses == [(0, "cached"), (1, "rendered")], statuses
    page.evaluate("v => seek(v)", words[first]["start"] + 0.3)  # the page's own seek
    settled(page)  # seeked: the frame at that time is the one shown
    assert page.evaluate("document.querySelector('video').readyState") >= 2
    shot = tmp_path / "review.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("UPDATE_REVIEW_SCREENSHOT") == "1":
        shutil.copy(shot, REPO / "docs" / "review.png")

    # Render (here with the animatic: no GPU) writes final/ with progress on the page; every
    # segment of version 2 is already in the cache, so nothing renders again.
    page.select_option("#renderer", "animatic")
    page.click("#render")
    settled(page, timeout=300_000)
    assert page.inner_text("#run-title") == "Render of v2 (animatic)"
    assert page.inner_text("#run-status") == "done: 0 of 2 segments re-rendered, 2 reused"
    assert np.array_equal(_frames(out / "final" / "video.mp4"), _frames(out / "video.mp4"))
    assert "open the video" in page.inner_text("#message")

    # The old version is still readable on the page.
    page.click('#versions li[data-version="1"] button.view')
    settled(page)
    assert page.inner_text("#version-view").startswith("version 1")
    assert original["phases"][1]["action"] in page.inner_text("#version-view")
    assert errors == []

    # Database: a second version with the edit, the first unchanged; segment statuses.
    versions = list_plan_versions(db, job_id)
    assert [(v.number, v.source) for v in versions] == [(1, "planner"), (2, "review")]
    v2 = versions[1].plan["phases"][1]
    assert (v2["action"], v2["first_word"], v2["last_word"], v2["source"]) == (
        NEW_ACTION,
        first,
        last,
        "edit",
    )
    assert get_plan_version(db, job_id, 1).plan == original
    assert json.loads((out / "plan.json").read_text())["phases"][1]["action"] == NEW_ACTION

    # The video changed only in the re-rendered segment (segments are joined by stream copy).
    before, after = _frames(old_video), _frames(out / "video.mp4")
    assert before.shape == after.shape
    cut = round(seg0_end * info["fps"])
    assert np.array_equal(before[:cut], after[:cut])
    diff = np.abs(before[cut:].astype(int) - after[cut:]).mean(axis=(1, 2, 3))
    assert diff.max() > 1.0  # the new action's label and phase bar


def test_run_with_a_given_plan_renders_only_what_it_changes_and_refuses_a_bad_one(review):
    from storage import sha256_file

    out, env = review["out"], review["env"]
    cli = [sys.executable, "-m", "orchestrator.cli", "run", str(EXAMPLES / "hello.md")]
    plan = json.loads((out / "plan.json").read_text())
    video_sha = sha256_file(out / "video.mp4")

    bad = json.loads(json.dumps(plan))
    p = bad["phases"][1]
    p["last_word"] = p["first_word"]
    p.pop("start"), p.pop("end")
    (out.parent / "bad.json").write_text(json.dumps(bad))
    proc = subprocess.run(
        [*cli, "--out", str(out), "--plan", str(out.parent / "bad.json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {out.parent / 'bad.json'}: phases[1] (words ")
    assert "shorter than min_phase_seconds 1" in proc.stderr
    assert sha256_file(out / "video.mp4") == video_sha  # nothing was rendered or stitched

    good = json.loads(json.dumps(plan))
    good["phases"][1]["action"] = "raises the right hand"
    (out.parent / "good.json").write_text(json.dumps(good))
    proc = subprocess.run(
        [*cli, "--out", str(out), "--plan", str(out.parent / "good.json"), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert (report["segments"], report["segments_rendered"], report["segments_cached"]) == (2, 1, 1)
    assert report["plan_given"] is True and report["plan_version"] >= 2
    assert json.loads((out / "plan.json").read_text())["phases"][1]["action"] == (
        "raises the right hand"
    )
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "jobs", "show", report["job_id"], "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    versions = json.loads(shown.stdout)["plan_versions"]
    assert versions[-1]["source"] == "cli" and versions[-1]["number"] == report["plan_version"]
    assert versions[-1]["diff"] == [
        f"phases[1]: action {plan['phases'][1]['action']!r} -> 'raises the right hand'"
    ]
