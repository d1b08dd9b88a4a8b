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
