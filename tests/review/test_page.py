"""The editing controls of the review page in headless Chromium, on a job made in the test
(no rendering): errors next to their rows, split, delete, add, base fields, versions."""

import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from review_helpers import settled

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "planners"))

pytestmark = pytest.mark.slow


@pytest.fixture
def url(fake_job):
    import uvicorn

    from orchestrator.review.app import create_app
    from orchestrator.review.job import open_job

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(open_job(str(fake_job["out"])))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _rows(page) -> list[tuple[str, str, str]]:
    out = []
    for row in page.locator("tr.phase-row").all():
        out.append(
            (
                row.locator("select.first").input_value(),
                row.locator("select.last").input_value(),
                row.locator("input.action").input_value(),
            )
        )
    return out


def test_split_delete_add_and_errors_next_to_their_rows(url, browser, fake_job):
    page = browser.new_page(viewport={"width": 1300, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    settled(page)
    assert _rows(page) == [
        ("2", "5", "waves hello with the right hand"),
        ("20", "23", "nods gently"),
    ]
    # Split phase 2 (words 20..23, 1.5 s) into 20..21 and 22..23: both are now too short, and
    # the validator's message shows under each of the two rows, not elsewhere.
    page.click('tr.phase-row[data-index="1"] button.split')
    settled(page)
    assert _rows(page)[1:] == [("20", "21", "nods gently"), ("22", "23", "nods gently")]
    first = page.inner_text('tr.row-errors[data-index="1"]')
    assert first.startswith("phases[1] (words 20..21, 'nods gently'): lasts 0.70 s, shorter")
    assert page.locator('tr.row-errors[data-index="0"]').count() == 0
    assert page.locator(".phase.invalid").count() == 2
    assert page.is_disabled("#save")
    # Delete one half: the other still too short; widen it with the word picker: valid again.
    page.click('tr.phase-row[data-index="2"] button.delete')
    settled(page)
    page.locator('tr.phase-row[data-index="1"] select.last').select_option("24")
    settled(page)
    assert page.locator("tr.row-errors").count() == 0
    assert page.is_enabled("#save")
    # An empty base field is an error next to that field.
    page.fill('#base input[data-field="mood"]', "")
    settled(page)
    assert page.inner_text('#base ul[data-field="mood"]') == "base.mood is empty"
    page.fill('#base input[data-field="mood"]', "upbeat")
    settled(page)
    assert page.locator("#base li").count() == 0
    # Add a phase at the playhead (seek by clicking a word on the timeline).
    page.click('.word[data-word="12"]')
    settled(page)
    page.click("#add")
    settled(page)
    assert page.locator("tr.phase-row").count() == 3
    assert _rows(page)[1][:2] == ("12", "14")  # from the playhead's word, at least 1 s
    page.click("#save")
    settled(page)
    assert page.inner_text("#version-label") == "v2"
    diff = page.inner_text('#versions li[data-version="2"] .diff')
    assert "base.mood: 'calm and friendly' -> 'upbeat'" in diff
    assert "added phases[1] (words 12..14, 'nods gently')" in diff
    assert errors == []


def test_edge_drag_snaps_and_a_planner_proposal_is_accepted_into_the_editor(
    url, browser, fake_job, monkeypatch
):
    from test_proposals import ANSWER

    page = browser.new_page(viewport={"width": 1300, "height": 800})
    page.goto(url)
    settled(page)
    # Drag the right edge of phase 2 (ends on word 23 at 9.5 s) by +0.8 s: snaps to word 25.
    page.locator('.phase[data-phase="1"] .edge.r').scroll_into_view_if_needed()
    edge = page.locator('.phase[data-phase="1"] .edge.r').bounding_box()
    pps = page.evaluate("S.pps")
    y = edge["y"] + edge["height"] / 2
    page.mouse.move(edge["x"] + 2, y)
    page.mouse.down()
    page.mouse.move(edge["x"] + 2 + 0.8 * pps, y, steps=4)
    page.mouse.up()
    settled(page)
    assert _rows(page)[1] == ("20", "25", "nods gently")
    # A click on a phase (no drag) seeks the video to its first word and selects its row.
    page.locator('.phase[data-phase="0"]').click()
    settled(page)
    assert page.evaluate("S.selected") == 0
    assert abs(page.evaluate("document.querySelector('video').currentTime") - 0.8) < 0.01

    from fake_openai import FakeOpenAIServer

    with FakeOpenAIServer([ANSWER]) as srv:
        monkeypatch.setenv("AVATAR_FLOW_LLM_BASE_URL", srv.url)
        monkeypatch.setenv("AVATAR_FLOW_LLM_MODEL", "fake-omni")
        page.reload()
        settled(page)
        assert page.is_enabled('tr.phase-row[data-index="1"] button.ask')
        page.click('tr.phase-row[data-index="1"] button.ask')
        settled(page, timeout=120_000)  # the run and its polls have ended
    assert page.is_visible("#proposal")
    assert page.inner_text("#proposal-diff") == (
        "phases[1]: action 'nods gently' -> 'counts on the fingers of one hand'; "
        "words 20..23 -> 18..21"
    )
    page.click("#reject")
    settled(page)
    assert page.is_hidden("#proposal") and _rows(page)[1] == ("20", "23", "nods gently")
    with FakeOpenAIServer([ANSWER]) as srv:
        monkeypatch.setenv("AVATAR_FLOW_LLM_BASE_URL", srv.url)
        page.click("#ask-all")
        settled(page, timeout=120_000)
    assert page.is_visible("#proposal")
    page.click("#accept")
    settled(page)
    assert _rows(page) == [
        (str(p["first_word"]), str(p["last_word"]), p["action"]) for p in ANSWER["phases"]
    ]
    assert page.input_value('#base input[data-field="identity"]') == ANSWER["base"]["identity"]
    assert page.is_enabled("#save")
    page.click("#save")
    settled(page)
    assert page.inner_text("#version-label") == "v2"
