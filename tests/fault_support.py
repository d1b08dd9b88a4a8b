"""Helpers of the fault-injection tests (tests/e2e/test_faults.py, tests/scale/test_faults_*):
a short script, a renderer that counts what it renders, a hook at a job's step."""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from support import write_script
from typer.testing import CliRunner

import flows.video.steps as steps
from flows.runtime import progress
from orchestrator.cli import app

TEXT = (
    "Hello there, this is a short test of the pipeline. It has a few words, "
    "and then a few more, so that it makes several segments."
)


def short_script(folder: Path, extra: str = "") -> Path:
    """About 7 s of speech in segments of at most 1.5 s (several small animatic segments).

    Its title is the test folder's name: the animatic draws it, so no other test's cached
    renders (Prefect's result store is shared by the session) are this test's."""
    return write_script(
        folder,
        TEXT + extra,
        name="talk.md",
        title=folder.name,
        resolution="256x144",
        fps=25,
        segment_seconds=1.5,
    )


class Counting:
    """The real renderer, recording which segments it was asked for."""

    def __init__(self, inner):
        self.inner, self.name, self.calls = inner, inner.name, []

    def __getattr__(self, name):  # the rest of the renderer protocol (last_stats, model_note)
        return getattr(self.inner, name)

    def render(self, request, progress=None):
        self.calls.append(request.index)
        return self.inner.render(request, progress)


def counting_renderer(monkeypatch) -> Callable[[], Counting]:
    """Install a fresh counting renderer (call again before each run to reset it)."""
    real = steps.get_renderer("animatic")

    def install() -> Counting:
        renderer = Counting(real)
        monkeypatch.setattr(steps, "get_renderer", lambda *a, **k: renderer)
        return renderer

    return install


@contextlib.contextmanager
def at(stage: str, done: int, action: Callable[[], None]) -> Iterator[None]:
    """Run `action` once when the job reaches (stage, done)."""
    fired = []

    def on_event(ev) -> None:
        if (ev.stage, ev.done) == (stage, done) and not fired:
            fired.append(True)
            action()

    with progress.listening(on_event):
        yield
    assert fired, f"the job never reached {stage}:{done}"


def run_cli(*args: str):
    result = CliRunner().invoke(app, ["run", *args])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    return result, lines
