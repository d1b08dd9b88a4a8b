"""Every flag of every command, fed bad values of its type, fails by the one failure rule.

The commands and their parameters are read from typer's own model of the CLI
(`typer.main.get_command(app)`), so an option added later is walked without touching this
file. Each parameter gets the bad values of its type:

- numbers: a word (wrong type), a negative number, zero (unless `ZERO_OK`), and a value past a
  range declared to typer (`min=`/`max=`) or documented for that name (`OUT_OF_RANGE`);
- paths: a missing path, a directory, a regular file with junk in it (where the command may
  take some of those, `PATH_OK` says which);
- strings with a closed set of values or a documented format (`STRING_BAD`): a value outside it;
- flags: `--flag=value` (a flag takes none).

The rule, for every one of them: exit code 2, one short line on stderr naming the flag (or its
field) and the value, no traceback, no job row, nothing written to the output folder. A value
a command legitimately takes stops at the first expensive call (`Reached`): commands must finish
their checks before that, so the walk never renders, trains or serves anything.
"""

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import typer
from support import write_script
from typer.testing import CliRunner

from flows.runtime.settings import get_settings
from orchestrator.cli import app


class Reached(BaseException):
    """The command got past its checks to expensive work (not an Exception: no handler of
    the command's own may turn it into an error line)."""


# Where expensive work begins, for every command: a Prefect flow call (run, plan, batch,
# dataset build, training), a server (serve, review), a process (worker), a benchmark, a judge,
# an export. (`checkpoints push/pull` check the id, the repo and the token before the network,
# and the tests run with the Hub offline and no token.)
GUARDS = [
    ("prefect.flows.Flow", "__call__"),
    ("prefect", "serve"),
    ("uvicorn", "run"),
    ("os", "execvpe"),
    ("generator.eval.bench", "run_bench"),
    ("generator.eval.drift", "run_drift"),
    ("flows.evaluation.judge", "judge_video"),
    ("storage.migrations", "revision"),
    ("generator.train.models", "export_pipeline"),
    ("generator.calibration", "calibrate_pipeline"),
]

# Values of required parameters that are good, so the one bad value is the only problem.
# `{x}` names a file made by `_world`.
GOOD = {
    "script": "{script}",
    "manifest": "{manifest}",
    "videos": "{videos}",
    "config": "{train_config}",
    ("train stage2", "config"): "{stage2_config}",
    ("train distill", "config"): "{distill_config}",
    ("checkpoints calibrate", "folder"): "{pipeline}",
    "video": "{video}",
    "--plan": "{plan}",
    "--pool": "pool",
    "job_id": "nojob",
    "revision": "head",
    "-m": "message",
    "ref": "ck",
    "repo": "owner/name",
    "out_dir": "{out}",
    "--out": "{out}",
}

# Zero is a valid value for these (parameter name -> why).
ZERO_OK = {
    "continuity": "0 = restart every segment from the avatar",
    "motion_threshold": "0 takes every clip for stage 2",
    "music_volume": "0 dB: the music as loud as mastered (the range is -40..0 dB)",
    "threshold": "a MagCache threshold of 0 skips no step",
}
# Negative values are valid for these (none so far).
NEGATIVE_OK = {"music_volume": "decibels under the speech"}

# Documented ranges of the job options (JobOptions validators): a value just past them, for
# the commands that take job options.
JOB_COMMANDS = ("run", "plan", "batch")
# Ranges documented in a command's help, wherever that name appears.
HELP_RANGE = {"port": ["70000"], "clip_frames": ["126"]}
OUT_OF_RANGE = {
    "steps": ["201"],
    "continuity": ["34", "4"],
    "segment_seconds": ["61"],
    "music_volume": ["1", "-41"],
}

# Strings with a closed set of values or a format: values outside it.
STRING_BAD = {
    "renderer": ["magic"],
    "planner": ["oracle"],
    "solver": ["sideways"],
    "continuity_mode": ["latents"],
    "voice": ["klingon"],
    "guidance_interval": ["0.9,0.1", "abc"],
    "webhook": ["ftp://x"],
    "gpu": ["x,y"],
    "seeds": ["a,b"],
    "backend": ["magic"],
    "status": ["sleeping"],
    "stage": ["stage9"],
    "url": ["nonsense://x"],
    "bucket": ["axb"],
    "set_": ["nokeyvalue"],
    "study": ["hue"],
    "encoders": ["preset:huge"],
    "repo": ["no-owner"],
    "size": ["big"],
    "ref": ["nockpt"],
}
# Commands whose parameters are all free text (names, messages, revisions): nothing to walk.
FREE_TEXT_ONLY = {"db revision", "llm reset"}

# Path parameters that take a missing path, a directory or a file (command, name) -> kinds.
# Every other combination must be refused.
PATH_OK = {
    ("run", "script"): {"file"},  # a script without front matter is all text
    ("plan", "script"): {"file"},
    ("run", "out_dir"): {"missing", "dir"},
    ("plan", "out_dir"): {"missing", "dir"},
    ("batch", "out_root"): {"missing", "dir"},
    ("batch", "manifest"): set(),
    ("dataset build", "out_dir"): {"missing", "dir"},
    ("checkpoints export", "out_dir"): {"missing", "dir"},
    ("eval synthetic", "out_dir"): {"missing", "dir"},
    ("eval drift", "out_dir"): {"missing", "dir"},
    ("eval judge", "report"): {"missing", "file"},
    ("batch", "template"): {"file"},  # the rows name their scripts: the template goes unused
    # model files whose content only loading them checks (seconds of torch/onnx import)
    ("eval judge", "syncnet"): {"file"},
    ("dataset build", "dwpose"): {"file"},
}


@dataclass(frozen=True)
class Case:
    command: str  # "dataset build"
    param: str  # the parameter's name ("out_dir")
    flag: str | None  # "--out"; None for an argument
    value: str
    kind: str  # what is wrong with it
    accepted: bool  # the command may take it (reaches `Reached`)


def _commands() -> Iterator[tuple[str, Any]]:
    """(path, command) for every command, groups with their own options included."""

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            if any(not getattr(p, "hidden", False) for p in cmd.params):
                yield " ".join(path), cmd
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    yield from walk(typer.main.get_command(app), [])


def _annotation(param) -> Any:
    """The parameter's Python type from typer's model, Optional[...] unwrapped."""
    desc = getattr(param, "type_descriptor", None)
    ann = desc.annotation if desc is not None else getattr(param.type, "name", str)
    if get_origin(ann) is Union or type(ann).__name__ == "UnionType":
        args = [a for a in get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else ann
    return ann


def _is_flag(param) -> bool:
    return bool(getattr(param, "is_flag", False))


def _declared_range(param) -> list[str]:
    info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
    values = []
    if info is not None and info.max is not None:
        values.append(str(info.max + 1))
    if info is not None and info.min is not None and info.min > 0:
        values.append(str(info.min - 1))
    return values


def _bad_values(command: str, param) -> Iterator[tuple[str, str, bool]]:
    """(value, kind, accepted) for one parameter."""
    ann, name = _annotation(param), param.name
    if _is_flag(param):
        return
    if get_origin(ann) is list:
        ann = get_args(ann)[0]
    if ann is bool:
        return
    if ann in (int, float):
        yield "abc", "not a number", False
        if ann is int:
            yield "1.5", "not an integer", False
        yield "-1", "negative", name in NEGATIVE_OK
        yield "0", "zero", name in ZERO_OK
        documented = OUT_OF_RANGE.get(name, []) if command in JOB_COMMANDS else []
        for v in _declared_range(param) + documented + HELP_RANGE.get(name, []):
            yield v, "out of range", False
        if ann is float:
            yield "nan", "not a number", False
            yield "inf", "infinite", False
    elif ann is Path:
        ok = PATH_OK.get((command, name), set())
        yield "{missing}", "missing", "missing" in ok
        yield "{a_dir}", "dir", "dir" in ok
        yield "{a_file}", "file", "file" in ok
    elif ann is str:
        for v in STRING_BAD.get(name, []):
            yield v, "unknown value", False


def cases() -> list[Case]:
    found = []
    for command, cmd in _commands():
        if not command:
            continue
        for p in cmd.params:
            if getattr(p, "hidden", False) or p.name in ("help",):
                continue
            flag = next((o for o in p.opts if o.startswith("--")), None) if p.opts else None
            if type(p).__name__.endswith("Argument"):
                flag = None
            if _is_flag(p):
                found.append(Case(command, p.name, flag, "maybe", "flag with a value", False))
                continue
            for value, kind, ok in _bad_values(command, p):
                found.append(Case(command, p.name, flag, value, kind, ok))
    return found


CASES = cases()


def _tiny_video(path: Path) -> Path:
    """One second of a talking-head-sized test pattern with a tone (made once per session)."""
    if not path.is_file():
        from flows.video.media import run_ffmpeg

        run_ffmpeg(
            ["-f", "lavfi", "-i", "testsrc=size=256x256:rate=25:duration=1"]
            + ["-f", "lavfi", "-i", "sine=frequency=220:duration=1"]
            + ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)]
        )
    return path


_VIDEO = Path(tempfile.gettempdir()) / f"avatar-flow-flags-{os.getpid()}.mp4"


def _world(tmp: Path) -> dict[str, str]:
    """The good inputs and the bad paths of one case."""
    from flows.training.checkpoints import register_checkpoint

    _tiny_video(_VIDEO)
    script = write_script(tmp, "Hello there.", name="talk.md", resolution="256x144")
    manifest = tmp / "manifest.csv"
    manifest.write_text(f"id,script\none,{script}\n")
    videos = tmp / "videos"
    videos.mkdir()
    (videos / "talk.mp4").write_bytes(_VIDEO.read_bytes())
    dataset = tmp / "dataset"
    dataset.mkdir()
    (dataset / "index.json").write_text("{}")
    data = f"data:\n  dataset: {dataset}\n"
    (tmp / "train.yaml").write_text(f"stage: stage1\n{data}")
    adapter = tmp / "adapter.safetensors"
    adapter.write_bytes(b"\0")
    (tmp / "stage2.yaml").write_text(f"stage: stage2\n{data}model:\n  adapter: {adapter}\n")
    teacher = tmp / "teacher"
    (teacher / "transformer").mkdir(parents=True)
    (teacher / "transformer" / "config.json").write_text("{}")
    (tmp / "distill.yaml").write_text(f"stage: distill\n{data}distill:\n  teacher: {teacher}\n")
    (tmp / "video.mp4").write_bytes(_VIDEO.read_bytes())
    plan = tmp / "plan.json"
    plan.write_text('{"phases": [{"action": "waves", "start": 0.0, "end": 0.5}]}')
    ckpt, pipeline = tmp / "ckpt", tmp / "pipeline"
    (ckpt / "transformer").mkdir(parents=True)
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text('{"_class_name": "ActAvatarPipeline"}')
    base = {"spec": str(pipeline), "dir": str(pipeline)}
    (ckpt / "train_config.json").write_text(json.dumps({"base": base}))
    register_checkpoint("ck", "stage1", 1, str(ckpt), "0" * 64)
    a_dir = tmp / "a_dir"
    a_dir.mkdir()
    a_file = tmp / "a_file.txt"
    a_file.write_text("junk {\n")
    return {
        "script": str(script),
        "manifest": str(manifest),
        "videos": str(videos),
        "train_config": str(tmp / "train.yaml"),
        "stage2_config": str(tmp / "stage2.yaml"),
        "distill_config": str(tmp / "distill.yaml"),
        "video": str(tmp / "video.mp4"),
        "plan": str(plan),
        "out": str(tmp / "out"),
        "missing": str(tmp / "missing" / "nothing.md"),
        "a_dir": str(a_dir),
        "a_file": str(a_file),
        "pipeline": str(pipeline),
    }


def _args(cmd, case: Case, world: dict[str, str]) -> list[str]:
    """The command line: required parameters good, the case's parameter bad."""
    args = case.command.split()
    value = case.value.format(**world)
    positional: list[str] = []
    for p in cmd.params:
        is_arg = type(p).__name__.endswith("Argument")
        if p.name == case.param:
            if is_arg:
                positional.append(value)
            elif _is_flag(p):
                args.append(f"{case.flag}={value}")
            else:
                args += [case.flag, value]
            continue
        key = p.name if is_arg else next((o for o in p.opts if o.startswith("-")), p.name)
        if p.required or (is_arg and key in GOOD) or (key == "--out" and key in GOOD):
            good = GOOD.get((case.command, p.name)) or GOOD.get(key) or GOOD.get(p.name)
            if good is None:
                pytest.fail(f"{case.command}: add a good value of {key} to GOOD")
            good = good.format(**world)
            if is_arg:
                positional.append(good)
            else:
                args += [p.opts[0], good]
    return args + positional


@contextlib.contextmanager
def _guards(monkeypatch) -> Iterator[None]:
    import importlib

    def reached(*_a, **_k):
        raise Reached()

    for module, attr in GUARDS:
        owner, _, cls = module.rpartition(".")
        try:
            target = importlib.import_module(module)
        except ImportError:
            target = getattr(importlib.import_module(owner), cls)
        monkeypatch.setattr(target, attr, reached)
    yield


def _job_rows() -> int:
    from sqlmodel import select

    from storage import Job, session_scope

    db = Path(get_settings().db_url.removeprefix("sqlite:///"))
    if not db.exists():
        return 0
    with session_scope(get_settings().db_url) as s:
        return len(s.exec(select(Job)).all())


def _names(cmd, case: Case) -> list[str]:
    param = next(p for p in cmd.params if p.name == case.param)
    names = [*param.opts, *(o.lstrip("-") for o in param.opts), param.name, param.name.rstrip("_")]
    names += [n.replace("_", "-") for n in names] + [n.upper() for n in names]
    return [n for n in names if n]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict[str, str]]:
    """One world for the whole walk, with its own AVATAR_FLOW_HOME (no case may write in it:
    each case compares a snapshot of it)."""
    root = tmp_path_factory.mktemp("flags")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVATAR_FLOW_HOME", str(root / "home"))
        get_settings(refresh=True)
        try:
            yield {**_world(root), "root": str(root)}
        finally:
            mp.undo()
            get_settings(refresh=True)


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.command}|{c.flag or c.param}={c.value}" for c in CASES]
)
@pytest.mark.timeout(120)  # a command that takes a value and its work is unguarded fails, not hangs
def test_every_bad_value_is_one_line_exit_2(case: Case, world, monkeypatch):
    root = Path(world["root"])
    cmd = dict(_commands())[case.command]
    args = _args(cmd, case, world)
    value = case.value.format(**world)
    before = _snapshot(root)
    with _guards(monkeypatch):
        try:
            result = CliRunner().invoke(app, args)
        except Reached:
            assert case.accepted, f"{args}: took the bad value {value!r} ({case.kind})"
            return
    assert result.exit_code == 2, (args, result.exit_code, result.stderr, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, (args, result.stderr)
    line = lines[0]
    assert line.startswith("error: ") and len(line) <= 300, (args, line)
    assert "Traceback" not in result.stderr and result.stdout == "", (args, result.output)
    # The flag or its field; or, for a file, the file itself as the line's subject (FILE: ...).
    names = _names(cmd, case)
    subject = case.value.startswith("{") and line.startswith(f"error: {value}")
    assert any(n in line for n in names) or subject or case.flag is None, (args, line, names)
    shown = value if case.kind != "flag with a value" else case.flag
    # a path may be named by its file name alone (the message is about that file)
    named = shown in line or (case.value.startswith("{") and Path(value).name in line)
    assert named, (args, line, shown)
    assert _job_rows() == 0
    assert _snapshot(root) == before, (args, "wrote files")


def _snapshot(root: Path) -> dict[str, tuple[int, float]]:
    """Every file under the test folder (the private home's database aside)."""
    files = {}
    for p in root.rglob("*"):
        if p.is_file() and "home" not in p.relative_to(root).parts[:1]:
            files[str(p)] = (p.stat().st_size, p.stat().st_mtime)
    return files


def test_the_walk_covers_every_command():
    """Every command that takes a parameter is walked (a new command is walked by itself), and
    the failure the walk was written for is in it: `run --out FILE`."""
    with_params = {name for name, cmd in _commands() if name and cmd.params} - FREE_TEXT_ONLY
    walked = {c.command for c in CASES}
    assert walked == with_params
    assert {"run", "plan", "batch", "dataset build", "train stage1", "eval judge"} <= walked
    assert any(c.command == "run" and c.flag == "--out" and c.kind == "file" for c in CASES)
    kinds = {c.kind for c in CASES}
    assert {"missing", "dir", "file", "zero", "negative", "not a number", "unknown value"} <= kinds
