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


def test_flat_dataset_and_training_parameters_move_into_their_contracts(tmp_path):
    """deployments.yaml written for the flat signatures of build-dataset and the training flows
    keeps working: each key goes to the contract parameter the flow takes now."""
    config = tmp_path / "deployments.yaml"
    config.write_text(
        "deployments:\n"
        "  build-dataset:\n"
        "    parameters: {videos: /srv/v, out: ds, fps: 24, max_phases: 4,"
        " buckets: ['704x1280']}\n"
        "  train-stage1:\n"
        "    parameters: {nproc: 2}\n"
        "    schedules:\n"
        "      - cron: '0 3 * * *'\n"
        "        parameters: {config: /c/s1.yaml, overrides: ['train.max_steps=10']}\n"
        "  train:\n"
        "    parameters: {stage1_config: /c/s1.yaml, stage2_config: /c/s2.yaml,"
        " stage2_overrides: ['seed=1'], nproc: 2}\n"
    )
    cfg = load_config(config)
    assert cfg["build-dataset"].parameters == {
        "videos": "/srv/v",
        "options": {
            "out": str(tmp_path / "ds"),
            "fps": 24,
            "max_phases": 4,
            "buckets": ["704x1280"],
        },
    }
    stage1 = cfg["train-stage1"]
    assert stage1.parameters == {"options": {"nproc": 2}}  # config comes with the schedule
    (sched,) = stage1.schedules
    assert sched.parameters == {
        "options": {"nproc": 2, "config": "/c/s1.yaml", "overrides": ["train.max_steps=10"]}
    }
    assert cfg["train"].parameters == {
        "stage1": {"config": "/c/s1.yaml", "nproc": 2},
        "stage2": {"config": "/c/s2.yaml", "overrides": ["seed=1"], "nproc": 2},
    }
    # The folded values are what the flows accept.
    from flows.training.options import DatasetOptions, TrainOptions

    assert DatasetOptions(**cfg["build-dataset"].parameters["options"]).buckets == [[704, 1280]]
    assert TrainOptions(**sched.parameters["options"]).nproc == 2


@pytest.mark.parametrize(
    ("flow", "parameters", "field", "fragment"),
    [
        ("build-dataset", "{clip_frames: 100}", "parameters.clip_frames", "4k+1"),
        ("build-dataset", "{options: {fps: 0}}", "parameters.options.fps", "between 1 and 120"),
        ("train-stage2", "{overrides: [lr]}", "parameters.overrides", "not KEY=VALUE"),
        ("train", "{nproc: 0}", "parameters.nproc", "at least 1"),
        ("train-distill", "{epochs: 3}", "parameters.epochs", "unknown parameter 'epochs'"),
    ],
)
def test_a_bad_dataset_or_training_parameter_is_one_line(
    tmp_path, flow, parameters, field, fragment
):
    config = tmp_path / "deployments.yaml"
    config.write_text(f"deployments:\n  {flow}:\n    parameters: {parameters}\n")
    with pytest.raises(InputError) as e:
        load_config(config)
    assert e.value.field == f"deployments.{flow}.{field}"
    assert fragment in str(e.value) and str(e.value).startswith(str(config))
