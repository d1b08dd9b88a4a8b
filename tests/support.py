"""Helpers shared by the tests. Import from here, not from `conftest`: several test folders
have a conftest.py, and `from conftest import ...` would pick whichever loaded first."""

from pathlib import Path

from generator.render_types import PromptPhase, StructuredPrompt

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def write_script(folder: Path, body: str, name: str = "script.md", **front) -> Path:
    """Write a script with front matter `front` (values as YAML scalars) and `body`."""
    lines = ["---"] + [f"{k}: {v}" for k, v in front.items()] + ["---", body]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def render_job(transcript, plan, specs, **fields):
    """A RenderJob for `plan`'s segments with small defaults (fields override them)."""
    from flows.video.render_job import RenderJob

    values = dict(
        renderer="animatic",
        checkpoint=None,
        analysis="speech16k.wav",
        transcript=transcript,
        plan=plan,
        avatar=None,
        width=640,
        height=352,
        seed=1,
        duration=transcript.duration,
        cuts=tuple(s.end for s in specs[:-1]),
        title="t",
        continuity_frames=0,
    )
    return RenderJob(**{**values, **fields})


# The tiny pipeline's clip (tests/generator): 9 frames at 64x96 with a two-phase prompt.
TINY_H, TINY_W, TINY_F = 64, 96, 9
TWO_PHASE_PROMPT = StructuredPrompt(
    "A woman speaking warmly to the camera",
    (PromptPhase("waves hello", 0.0, 0.2), PromptPhase("points at chart", 0.2, 0.36)),
    duration=0.36,
)


def run_tiny_pipeline(pipe, avatar, speech, **kw):
    """One call of the tiny ActAvatarPipeline on that clip (seed 0); `kw` adds or overrides."""
    args = dict(
        image=avatar,
        audio=speech,
        prompt=TWO_PHASE_PROMPT,
        num_frames=TINY_F,
        height=TINY_H,
        width=TINY_W,
        seed=0,
    )
    args.update(kw)
    return pipe(**args).frames
