"""The job options contract (`flows.video.options.JobOptions`) is the one list of job options:
the CLI's `run`, the CLI's `batch` (its per-row defaults), `Studio.produce`, the `produce-video`
flow's form and the batch manifest's reserved columns all take exactly its fields, with its
defaults."""

import inspect

import pytest
import typer
from support import EXAMPLES
from typer.testing import CliRunner

from flows.runtime.errors import InputError
from flows.runtime.settings import get_settings
from flows.video.batch import OPTION_COLUMNS, RESERVED, already_done, prepare_rows
from flows.video.inputs import prepare_inputs
from flows.video.options import NOT_IN_KEY, JobOptions, describe, option_fields
from orchestrator.cli import app
from orchestrator.studio import Studio

FIELDS = set(option_fields())
PRESENTATION = {"json", "verbose"}  # how `run` prints, not what the job does


def _run_command():
    return typer.main.get_command(app).commands["run"]


def _cli_options() -> dict[str, object]:
    """`run`'s options by long name (`--segment-seconds` -> segment_seconds) with defaults."""
    found = {}
    for p in _run_command().params:
        if isinstance(p, typer.core.TyperOption):
            long = max((o for o in p.opts if o.startswith("--")), key=len)
            found[long[2:].replace("-", "_")] = p.default
    return found


def test_cli_run_options_are_the_contract_fields_with_its_defaults():
    options = _cli_options()
    assert set(options) - PRESENTATION == FIELDS
    for name in FIELDS:
        assert options[name] == JobOptions.model_fields[name].default, name


def test_cli_run_help_is_the_contract_description():
    helps = {
        max(p.opts, key=len): p.help
        for p in _run_command().params
        if isinstance(p, typer.core.TyperOption)
    }
    assert helps["--continuity"] == JobOptions.model_fields["continuity"].description


# `batch`'s own options (the batch's manifest, output root, summary webhook, ...) and the job
# options that only a manifest row can set (its output folder, its plan, its job webhook, the
# values of its template's variables).
BATCH_OWN = {"manifest", "template", "out_root", "concurrency", "webhook", "gpus", "as_json"}
PER_ROW_ONLY = {"out", "plan", "webhook", "variables"}
# A valid value other than the default for every option `batch` takes from the contract.
BATCH_SAMPLES = {
    "renderer": "actavatar",
    "planner": "mllm",
    "voice": "openai:alloy",
    "checkpoint": "/srv/ckpt",
    "segment_seconds": 4.5,
    "steps": 8,
    "continuity": 5,
    "continuity_mode": "pixels",
    "color_anchor": True,
    "fast": True,
    "solver": "euler",
    "guidance_interval": "0,0.9",
    "step_cache": True,
    "force": True,
    "replan": True,
    "strict": True,
    "brand": "/srv/brand.yaml",
    "music": "/srv/music.ogg",
    "music_volume": -12.0,
    "loudness": "broadcast",
    "burn_captions": "words",
    "chapters": False,
}


def _batch_params() -> dict[str, object]:
    return {p.name: p for p in typer.main.get_command(app).commands["batch"].params}


def test_cli_batch_row_defaults_are_the_contract_fields_with_its_help_and_defaults():
    params = _batch_params()
    assert set(params) - BATCH_OWN - PRESENTATION == FIELDS - PER_ROW_ONLY
    for name in FIELDS - PER_ROW_ONLY:
        field = JobOptions.model_fields[name]
        assert params[name].default == field.default, name
        assert params[name].help == describe(name), name  # the description (+ choices)
        assert f"--{name.replace('_', '-')}" in params[name].opts, name
    assert set(BATCH_SAMPLES) == FIELDS - PER_ROW_ONLY  # a new option needs a sample here


def test_cli_batch_passes_every_contract_option_to_the_flow(tmp_path, monkeypatch):
    import flows.video.batch as batch_module

    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.md").write_text("---\navatar: a.png\n---\nHi.\n")
    seen = {}

    def produce_batch(**kwargs):
        seen.update(kwargs)
        return {"rows": [], "summary": {"done": 0, "skipped": 0, "failed": 0}, "report": "-"}

    monkeypatch.setattr(batch_module, "produce_batch", produce_batch)
    # The sample checkpoint is a name, not a folder here: the path checks are walked elsewhere
    # (tests/e2e/test_flags.py); this test is about what reaches the flow.
    monkeypatch.setattr("flows.video.inputs.check_option_paths", lambda options: None)
    args = []
    for name, value in BATCH_SAMPLES.items():
        flag = f"--{name.replace('_', '-')}"
        if value is False:
            args.append(f"--no-{flag[2:]}")
        else:
            args += [flag] if value is True else [flag, str(value)]
    result = CliRunner().invoke(
        app, ["batch", str(tmp_path / "scripts"), "--out", str(tmp_path / "b"), *args]
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    chosen = seen["options"].model_dump(include=set(BATCH_SAMPLES))
    assert chosen == BATCH_SAMPLES


def test_studio_produce_takes_the_contract_fields_with_its_defaults():
    params = inspect.signature(Studio.produce).parameters
    names = set(params) - {"self", "script"}
    assert names == FIELDS
    for name in FIELDS:
        assert params[name].default == JobOptions.model_fields[name].default, name


def test_flow_parameter_is_the_contract_and_the_form_describes_every_field():
    from prefect.utilities.callables import parameter_schema

    from flows.video.produce import produce_video

    assert list(inspect.signature(produce_video.fn).parameters) == ["script", "options"]
    schema = parameter_schema(produce_video.fn).model_dump()
    fields = schema["definitions"]["JobOptions"]["properties"]
    assert set(fields) == FIELDS
    assert all(f.get("description") for f in fields.values())
    assert fields["renderer"]["enum"] == ["animatic", "actavatar"]


def test_manifest_reserved_columns_are_the_contract_fields():
    assert set(OPTION_COLUMNS) == FIELDS
    assert set(RESERVED) == FIELDS | {"id", "script", "template"}
    # Every field is settable per row, continuity included, and cells are validated by it.
    (row,) = prepare_rows(
        [{"script": "a.md", "continuity": "5", "force": "yes", "segment_seconds": "4.5"}]
    )
    assert row.options == {"continuity": 5, "force": True, "segment_seconds": 4.5}
    with pytest.raises(InputError, match="row 1: 'lots' is not a number") as e:
        prepare_rows([{"script": "a.md", "steps": "lots"}], source="m.csv")
    assert e.value.field == "steps" and str(e.value).startswith("m.csv: field 'steps': ")


def test_input_key_hashes_exactly_the_options_that_change_the_video(fresh_home):
    assert set(JobOptions().key_values()) == FIELDS - set(NOT_IN_KEY)
    settings = get_settings()
    base = prepare_inputs(EXAMPLES / "hello.md", JobOptions(), settings).input_key
    same = JobOptions(out="/tmp/elsewhere", force=True, webhook="http://127.0.0.1:9/h")
    assert prepare_inputs(EXAMPLES / "hello.md", same, settings).input_key == base
    for changed in (JobOptions(segment_seconds=4), JobOptions(continuity=5), JobOptions(steps=8)):
        assert prepare_inputs(EXAMPLES / "hello.md", changed, settings).input_key != base


def test_batch_skip_rule_follows_the_contract(fresh_home, tmp_path):
    """A done job is found again whatever `force`/`webhook` say, never for other options."""
    from storage import Job, JobStatus, session_scope

    settings = get_settings()
    script = EXAMPLES / "hello.md"
    out = tmp_path / "o"
    inputs = prepare_inputs(script, JobOptions(out=str(out)), settings)
    out.mkdir()
    (out / "video.mp4").write_bytes(b"x")
    with session_scope(settings.db_url) as s:
        s.add(
            Job(
                id="done1",
                input_key=inputs.input_key,
                out_dir=str(inputs.out_dir(settings)),
                status=JobStatus.done,
            )
        )
    again = JobOptions(out=str(out), webhook="http://127.0.0.1:9/h", force=True)
    assert already_done(script, again)["job_id"] == "done1"
    assert already_done(script, JobOptions(out=str(out), segment_seconds=4)) is None
    assert already_done(script, JobOptions(out=str(tmp_path / "other"))) is None


def test_one_default_output_folder_rule(fresh_home, tmp_path):
    settings = get_settings()
    inputs = prepare_inputs(EXAMPLES / "hello.md", JobOptions(), settings)
    assert inputs.out_dir(settings) == fresh_home / "outputs" / f"hello-{inputs.input_key[:8]}"
    given = prepare_inputs(EXAMPLES / "hello.md", JobOptions(out=str(tmp_path / "x")), settings)
    assert given.out_dir(settings) == tmp_path / "x"


# --- the dataset and training contracts (flows.training.options) -----------------------------
# A CLI flag whose name differs from its field: repeatable flags are singular.
FLAG_FIELDS = {"bucket": "buckets", "set": "overrides"}


def _command_options(*path: str) -> dict[str, object]:
    """A command's parameters by contract field name (long flag, or argument name)."""
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    found = {}
    for p in command.params:
        if isinstance(p, typer.core.TyperOption):
            long = max((o for o in p.opts if o.startswith("--")), key=len)[2:]
            found[FLAG_FIELDS.get(long, long.replace("-", "_"))] = p
        else:
            found[p.name] = p
    return found


def _assert_cli_is_the_contract(params: dict, model, own: set[str]) -> None:
    """Same names; each flag's help is the field's description; each default means the
    field's default once the contract reads it (`704x1280` is [704, 1280], a path a string)."""
    assert set(params) - own - PRESENTATION == set(model.model_fields)
    required = {n: "x" for n, f in model.model_fields.items() if f.is_required()}
    for name, field in model.model_fields.items():
        p = params[name]
        assert p.help.startswith(field.description), name
        if field.is_required():
            assert p.required, name
            continue
        value = p.default
        value = [str(v) for v in value] if isinstance(value, (list, tuple)) else value
        parsed = model.model_validate({**required, name: value})
        assert getattr(parsed, name) == field.get_default(call_default_factory=True), name


def _form(fn) -> dict:
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(fn).model_dump()


def test_cli_dataset_build_options_are_the_dataset_contract():
    from flows.training.options import DatasetOptions

    params = _command_options("dataset", "build")
    _assert_cli_is_the_contract(params, DatasetOptions, own={"videos", "as_json"})
    assert "max_phases" in params  # was missing from the CLI


def test_cli_train_commands_take_the_stage_contract():
    from flows.training.options import TrainOptions

    for stage in ("stage1", "stage2", "distill"):
        params = _command_options("train", stage)
        _assert_cli_is_the_contract(params, TrainOptions, own={"as_json"})


def test_dataset_flow_takes_the_contract_and_the_form_describes_every_field():
    from flows.training.dataset import build_dataset
    from flows.training.options import DatasetOptions

    assert list(inspect.signature(build_dataset.fn).parameters) == ["videos", "options"]
    fields = _form(build_dataset.fn)["definitions"]["DatasetOptions"]["properties"]
    assert set(fields) == set(DatasetOptions.model_fields)
    assert all(f.get("description") for f in fields.values())
    from planners.registry import planner_names

    assert fields["planner"]["enum"] == list(planner_names())  # plugins' planners too


def test_training_flows_take_the_stage_contract_and_the_form_describes_every_field():
    from flows.training import train
    from flows.training.options import TrainOptions

    shapes = {
        train.train_stage1: ["options"],
        train.train_stage2: ["options"],
        train.train_distill: ["options"],
        train.train_both: ["stage1", "stage2"],
    }
    for fl, names in shapes.items():
        assert list(inspect.signature(fl.fn).parameters) == names, fl.name
        fields = _form(fl.fn)["definitions"]["TrainOptions"]["properties"]
        assert set(fields) == set(TrainOptions.model_fields)
        assert all(f.get("description") for f in fields.values())


def test_the_trainer_reads_what_the_flow_launches_it_with():
    """`python -m generator.train`'s own flags take the stage options the flow passes on."""
    from flows.training.options import TrainOptions
    from flows.training.train import launch_command
    from generator.train.__main__ import build_parser

    options = TrainOptions(config="c.yaml", overrides=["seed=1", "a.b=x=y"], stop_after=3)
    cmd = launch_command(options)
    args = build_parser().parse_args(cmd[cmd.index("generator.train") + 1 :])
    assert (args.config, args.overrides, args.stop_after) == ("c.yaml", ["seed=1", "a.b=x=y"], 3)
    torchrun = launch_command(options.model_copy(update={"nproc": 2}))
    assert torchrun[torchrun.index("--nproc_per_node") + 1] == "2"


def test_bad_training_options_are_one_line_naming_the_field():
    from flows.training.options import TrainOptions

    with pytest.raises(InputError, match="override 'lr' is not KEY=VALUE") as e:
        TrainOptions.parse(config="c.yaml", overrides=["lr"])
    assert e.value.field == "overrides"
    with pytest.raises(InputError, match="nproc must be at least 1") as e:
        TrainOptions.parse(config="c.yaml", nproc=0)
    with pytest.raises(InputError, match="unknown option 'stop'"):
        TrainOptions.parse(config="c.yaml", stop=3)
