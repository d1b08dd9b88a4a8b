"""The job options contract (`flows.video.options.JobOptions`) is the one list of job options:
the CLI's `run`, `Studio.produce`, the `produce-video` flow's form and the batch manifest's
reserved columns all take exactly its fields, with its defaults."""

import inspect

import pytest
import typer
from support import EXAMPLES

from flows.runtime.errors import InputError
from flows.runtime.settings import get_settings
from flows.video.batch import OPTION_COLUMNS, RESERVED, already_done, prepare_rows
from flows.video.inputs import prepare_inputs
from flows.video.options import NOT_IN_KEY, JobOptions, option_fields
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
