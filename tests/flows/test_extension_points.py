"""Extension points: renderers and planners are registered specs found through entry points.

A toy renderer and a toy planner live in a package written here, outside the project's
packages, and are registered only through entry-point metadata (a `*.dist-info` folder on the
path, which is what `pip install` writes). No file of the project is edited for them.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support import REPO, write_script

PACKAGES = ("storage", "planners", "generator", "flows", "orchestrator")
REGISTRIES = {
    REPO / "flows/video/renderers.py",
    REPO / "planners/registry.py",
}
TOY_COLOUR = (200, 40, 160)

TOY_PLUGIN = f'''
"""A renderer and a planner from outside avatar-flow."""

import numpy as np

from flows.video.renderers import RendererSpec
from planners import PlannerSpec, RulePlanner


class ToyRenderer:
    name = "toy"
    model_note = "toy model"
    last_stats = {{"evaluations": 7}}

    def render(self, request, progress=None):
        frame = np.empty((request.height, request.width, 3), np.uint8)
        frame[:] = {TOY_COLOUR}
        return np.repeat(frame[None], request.num_frames, axis=0)


class ToyPlanner:
    name = "toy"

    def plan(self, request):
        plan = RulePlanner().plan(request)
        return plan.model_copy(update={{"planner": "toy"}})


RENDERER = RendererSpec(
    name="toy", description="solid colour frames", load=lambda setup: ToyRenderer()
)
PLANNER = PlannerSpec(name="toy", description="the rules, signed", create=lambda rt, **kw: ToyPlanner())
'''


def make_plugin(root: Path) -> Path:
    """A package `toy_plugin` and its dist-info with entry points, as pip would install it."""
    (root / "toy_plugin").mkdir(parents=True)
    (root / "toy_plugin" / "__init__.py").write_text(TOY_PLUGIN)
    info = root / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[avatar_flow.renderers]\ntoy = toy_plugin:RENDERER\n\n"
        "[avatar_flow.planners]\ntoy = toy_plugin:PLANNER\n"
    )
    return root


def plugin_env(home: Path, plugin: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AVATAR_FLOW_"))}
    env.update(
        AVATAR_FLOW_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        PYTHONPATH=os.pathsep.join([str(plugin), str(REPO)]),
    )
    return env


def test_the_registries_list_builtins_and_plugins_without_importing_them(tmp_path):
    plugin = make_plugin(tmp_path / "site")
    code = textwrap.dedent(
        """
        import json, sys
        from flows.video.renderers import renderer_names
        from planners import planner_names
        from flows.video.options import JobOptions, describe
        names = {"renderers": renderer_names(), "planners": planner_names(),
                 "imported": "toy_plugin" in sys.modules,
                 "help": describe("renderer"),
                 "schema": JobOptions.model_json_schema()["properties"]["renderer"]["enum"]}
        print(json.dumps(names))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=plugin_env(tmp_path / "home", plugin),
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["renderers"] == ["animatic", "actavatar", "toy"]
    assert got["planners"] == ["rule", "mllm", "toy"]
    assert got["imported"] is False  # names come from the metadata alone
    assert "toy" in got["help"] and got["schema"] == ["animatic", "actavatar", "toy"]


def test_a_broken_plugin_is_named_when_its_renderer_is_asked_for(monkeypatch):
    from flows.video import renderers

    class FakeEntryPoint:
        name, value = "broken", "somewhere:NOT_A_SPEC"

        def load(self):
            return object()

    monkeypatch.setattr(renderers, "_entry_points", lambda: {"broken": FakeEntryPoint()})
    assert "broken" in renderers.renderer_names()
    with pytest.raises(ValueError, match=r"'broken' = somewhere:NOT_A_SPEC .* not a RendererSpec"):
        renderers.get_renderer_spec("broken")
    with pytest.raises(ValueError, match=r"unknown renderer 'nope' \(one of: animatic, "):
        renderers.get_renderer_spec("nope")


@pytest.mark.slow
def test_a_plugin_renderer_and_planner_run_end_to_end_from_the_cli(tmp_path):
    plugin = make_plugin(tmp_path / "site")
    env = plugin_env(tmp_path / "home", plugin)
    cli = [sys.executable, "-m", "orchestrator.cli"]
    helptext = subprocess.run(
        [*cli, "run", "--help"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "toy" in " ".join(helptext.split())
    schema = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from flows.video.produce import produce_video as f; "
            "print(json.dumps(f.parameters.model_dump(mode='json')))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"toy"' in schema and "avatar_flow.renderers" in schema

    script = write_script(tmp_path, "Hello there. Thank you for watching.", resolution="320x176")
    out = tmp_path / "out"
    proc = subprocess.run(
        [*cli, "run", str(script), "--renderer", "toy", "--planner", "toy", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "plan.json").read_text())["planner"] == "toy"
    import av

    with av.open(str(out / "video.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (176, 320, 3)
    assert np.abs(frame.reshape(-1, 3).mean(0) - TOY_COLOUR).max() < 6  # the toy's pixels


# A comparison with a built-in renderer or planner name: `x == "animatic"`, `"mllm" != y`,
# `x in ("rule", "mllm")`, `if name == 'actavatar'`...
NAMES = r"(?:animatic|actavatar|rules?|mllm|llm)"
COMPARISON = re.compile(
    rf"""(?:==|!=|\bin)\s*[\(\[\{{]?\s*["']{NAMES}["']|["']{NAMES}["']\s*(?:==|!=)"""
)


# Same words, other meanings: a base checkpoint's kind (a plain Wan or an ActAvatar model).
NOT_A_NAME = {("generator/train/models.py", 'base.kind == "actavatar"')}


def test_no_renderer_or_planner_name_is_compared_outside_the_registries():
    assert COMPARISON.search('if job.renderer == "animatic":')  # the pattern sees one
    assert COMPARISON.search("if opts.planner not in ('rule', 'rules', 'mllm'):")
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path in REGISTRIES:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                rel = str(path.relative_to(REPO))
                if any(rel == f and text in line for f, text in NOT_A_NAME):
                    continue
                if COMPARISON.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []


def test_importing_the_library_packages_changes_nothing(tmp_path):
    code = textwrap.dedent(
        f"""
        import json, os, sys
        env, finders = dict(os.environ), list(sys.meta_path)
        import flows, flows.video.produce, flows.video.batch, flows.training.train
        import flows.training.dataset, generator, planners, storage
        ours = [type(f).__module__ for f in sys.meta_path if f not in finders
                and type(f).__module__.split(".")[0] in {PACKAGES!r}]
        changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
        print(json.dumps({{"env": changed, "finders": ours}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_HOME"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"env": [], "finders": []}
    # The old module paths of registered deployments still load the same flows.
    import flows.produce
    import flows.video.produce

    assert flows.produce.produce_video is flows.video.produce.produce_video
