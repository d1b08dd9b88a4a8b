"""The deployment registry imports every flow explicitly, old entrypoints of deployments
registered before the flows/ regrouping still resolve, and deployments.yaml's job options
(flat or under `options:`) become the flow's typed `options` parameter."""

import pytest
from prefect.utilities.importtools import import_object

from flows.runtime.errors import InputError
from orchestrator.deployments import REGISTRY, available_flows, load_config


def test_every_registered_flow_is_imported_by_name():
    flows = available_flows()
    assert list(flows) == [s.flow_name for s in REGISTRY]
    assert all(fl.name == name for name, (_spec, fl) in flows.items())


def test_a_broken_flow_module_is_an_error_not_a_missing_deployment(monkeypatch):
    import orchestrator.deployments as dep

    broken = dep.DeploymentSpec("produce-video", "flows.video.no_such_module", "x", "d")
    monkeypatch.setattr(dep, "REGISTRY", (broken,))
    with pytest.raises(ModuleNotFoundError):
        dep.available_flows()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("flows.produce.produce_video", "flows.video.produce.produce_video"),
        ("flows.batch.produce_batch", "flows.video.batch.produce_batch"),
        ("flows.dataset.build_dataset", "flows.training.dataset.build_dataset"),
        ("flows.train.train_stage1", "flows.training.train.train_stage1"),
        ("flows.train.train_both", "flows.training.train.train_both"),
    ],
)
def test_entrypoints_of_earlier_deployments_still_load_the_same_flow(old, new):
    assert import_object(old) is import_object(new)


def test_flat_job_options_move_into_the_options_parameter(tmp_path):
    config = tmp_path / "deployments.yaml"
    config.write_text(
        "deployments:\n"
        "  produce-video:\n"
        "    parameters: {renderer: animatic, planner: rule}\n"
        "    schedules:\n"
        "      - cron: '0 9 * * mon'\n"
        "        parameters: {script: talk.md, out: weekly, options: {continuity: 5}}\n"
        "  produce-batch:\n"
        "    parameters: {concurrency: 2, voice: piper, webhook: 'http://h/batch'}\n"
    )
    cfg = load_config(config)
    video = cfg["produce-video"]
    assert video.parameters == {"options": {"renderer": "animatic", "planner": "rule"}}
    (sched,) = video.schedules
    assert sched.parameters == {
        "script": str(tmp_path / "talk.md"),
        "options": {
            "renderer": "animatic",
            "planner": "rule",
            "continuity": 5,
            "out": str(tmp_path / "weekly"),
        },
    }
    # produce-batch's own `webhook` (the summary) stays its parameter; `voice` is a row default.
    assert cfg["produce-batch"].parameters == {
        "concurrency": 2,
        "webhook": "http://h/batch",
        "options": {"voice": "piper"},
    }


def test_a_bad_option_value_in_deployments_yaml_is_one_line(tmp_path):
    config = tmp_path / "deployments.yaml"
    config.write_text("deployments:\n  produce-video:\n    parameters: {continuity: 4}\n")
    with pytest.raises(InputError) as e:
        load_config(config)
    assert e.value.field == "deployments.produce-video.parameters.continuity"
    assert "0 or 1, 5, 9" in str(e.value)
