"""Helpers shared by the tests. Import from here, not from `conftest`: several test folders
have a conftest.py, and `from conftest import ...` would pick whichever loaded first."""

from pathlib import Path

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
    from flows.video.render import RenderJob

    values = dict(
        renderer="animatic",
        checkpoint=None,
        steps=40,
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
