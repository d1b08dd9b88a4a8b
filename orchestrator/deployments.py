"""Which flows are deployed, and their schedules from deployments.yaml.

The registry names each deployable flow by its Prefect flow name and the module that defines
it; every module is imported explicitly, so a broken flow module is an error at `serve` or
`deploy`, never a silently missing deployment. Deployments use module-path entrypoints
(`flows.video.produce.produce_video`), so a worker on another machine only needs avatar-flow
installed — no image, no remote storage.

Deployments registered before the flows/ regrouping point at the old module paths
(`flows.produce.produce_video`, ...). Those paths keep importing (`flows.LEGACY_MODULES`
aliases them), and running `avatar-flow deploy` again migrates each deployment to its new
entrypoint (same flow and deployment name, so the deployment is updated, not duplicated).

deployments.yaml:

    deployments:
      produce-video:
        parameters: {renderer: animatic}        # defaults shown in the UI's Run form
        schedules:
          - cron: "0 9 * * mon"
            timezone: Europe/Berlin
            slug: weekly-update
            parameters: {script: /srv/scripts/weekly.md, out: /srv/videos/weekly}

Job options (`renderer`, `out`, ...) may be written flat as above or under `options:`; flat keys
are moved into the flow's `options` parameter (`flows.video.options.JobOptions`), and so are the
dataset options of `build-dataset` (`flows.training.options.DatasetOptions`) and the stage options
of the training flows (`TrainOptions`; the `train` flow's earlier `stage1_config`, `nproc`, ...
go to its `stage1`/`stage2`), so files written for the earlier flat signatures keep working.
Every value is checked by its contract when the file is loaded. Relative paths
in `script`, `manifest`, `template`, `out`, `out_root`, `checkpoint` and `plan` resolve against the
folder of the YAML file.
"""

import importlib
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flows.runtime.errors import InputError


@dataclass(frozen=True)
class DeploymentSpec:
    """A flow (by Prefect name) to deploy, and the module that defines it."""

    flow_name: str
    module: str
    attribute: str
    description: str
    tags: tuple[str, ...] = ("avatar-flow",)

    def load(self) -> Any:
        """The Prefect flow object; an import error is raised, not skipped."""
        return getattr(importlib.import_module(self.module), self.attribute)


REGISTRY: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        "produce-video",
        "flows.video.produce",
        "produce_video",
        "Turn a script into a finished talking-avatar video.",
    ),
    DeploymentSpec(
        "produce-batch",
        "flows.video.batch",
        "produce_batch",
        "One video per row of a batch manifest (CSV, JSONL, YAML or a script folder).",
    ),
    DeploymentSpec(
        "build-dataset",
        "flows.training.dataset",
        "build_dataset",
        "Build a phase-annotated training dataset from raw clips.",
    ),
    DeploymentSpec(
        "train-stage1",
        "flows.training.train",
        "train_stage1",
        "Stage 1: train the audio adapter on the frozen text-to-video backbone.",
    ),
    DeploymentSpec(
        "train-stage2",
        "flows.training.train",
        "train_stage2",
        "Stage 2: fine-tune the image-to-video model with the adapter and phases.",
    ),
    DeploymentSpec(
        "train-distill",
        "flows.training.train",
        "train_distill",
        "Distill a teacher into a few-evaluation student (guidance folded in).",
    ),
    DeploymentSpec("train", "flows.training.train", "train_both", "Train ActAvatar (both stages)."),
)


@dataclass
class ScheduleSpec:
    cron: str
    timezone: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    slug: str | None = None
    active: bool = True


@dataclass
class DeploymentConfig:
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[ScheduleSpec] = field(default_factory=list)
    description: str | None = None
    tags: list[str] = field(default_factory=list)


def available_flows() -> dict[str, tuple[DeploymentSpec, Any]]:
    """Every registered flow, imported, by flow name."""
    return {spec.flow_name: (spec, spec.load()) for spec in REGISTRY}


# --- deployments.yaml -----------------------------------------------------------------------


def _check_cron(expr: Any, timezone: str | None, where: str, file: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    if not isinstance(expr, str):
        raise InputError(
            f'{where}: cron must be a string like "0 9 * * mon"', file=file, field=f"{where}.cron"
        )
    try:
        CronSchedule(cron=expr, timezone=timezone)
    except ValueError as exc:
        msg = str(exc).splitlines()
        detail = next(
            (m.strip() for m in msg if "cron" in m.lower() or "timezone" in m.lower()),
            msg[-1].strip(),
        )
        raise InputError(
            f"invalid schedule {expr!r} ({detail})", file=file, field=f"{where}.cron"
        ) from None


PATH_PARAMETERS = ("script", "manifest", "template", "out", "out_root", "checkpoint", "plan")
# Parameters of earlier flow signatures, by flow: where each now goes (`parameter.field`, one
# or more). The `train` flow took flat per-stage keys before its stages took `TrainOptions`.
MOVED_PARAMETERS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "stage1_config": ("stage1.config",),
        "stage2_config": ("stage2.config",),
        "stage1_overrides": ("stage1.overrides",),
        "stage2_overrides": ("stage2.overrides",),
        "accelerate_config": ("stage1.accelerate_config", "stage2.accelerate_config"),
        "nproc": ("stage1.nproc", "stage2.nproc"),
    }
}


def contract_parameters(fl: Any) -> dict[str, type[BaseModel]]:
    """The flow's parameters typed by an options contract (`options: JobOptions`, ...)."""
    hints = typing.get_type_hints(fl.fn)
    return {
        name: hints[name]
        for name in inspect.signature(fl.fn).parameters
        if isinstance(hints.get(name), type) and issubclass(hints[name], BaseModel)
    }


def flat_keys(fl: Any) -> dict[str, tuple[str, ...]]:
    """Keys a deployment may still write flat, and the `parameter.field`s they go to: an
    option-contract field when the flow has one contract parameter (the shape of the flows'
    signatures before their options became one model), and the moved parameters."""
    contracts = contract_parameters(fl)
    moved = dict(MOVED_PARAMETERS.get(fl.name, {}))
    if len(contracts) == 1:
        ((param, model),) = contracts.items()
        moved.update({f: (f"{param}.{f}",) for f in model.model_fields if f not in moved})
    signature = inspect.signature(fl.fn).parameters
    return {k: v for k, v in moved.items() if k not in signature}


def _check_params(fl: Any, params: Any, where: str, file: str) -> dict[str, Any]:
    """Known parameter names only; flat options folded into the flow's contract parameter
    (`options`, checked by its model; required fields may come from a schedule or the run);
    relative paths resolve against the YAML file's folder."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InputError("parameters must be a mapping", file=file, field=where)
    signature = inspect.signature(fl.fn).parameters
    flat = flat_keys(fl)
    known = set(signature) | set(flat)
    for k in params:
        if k not in known:
            raise InputError(
                f"unknown parameter '{k}' for flow {fl.name} (one of: {', '.join(sorted(known))})",
                file=file,
                field=f"{where}.{k}",
            )
    base = Path(file).resolve().parent

    def absolute(k: str, v: Any) -> Any:
        if k in PATH_PARAMETERS and isinstance(v, str) and v and not Path(v).is_absolute():
            return str(base / v)
        return v

    out = {k: absolute(k, v) for k, v in params.items() if k in signature}
    for param, model in contract_parameters(fl).items():
        given = out.get(param)
        if given is not None and not isinstance(given, dict):
            raise InputError("expected a mapping of options", file=file, field=f"{where}.{param}")
        merged = {k: absolute(k, v) for k, v in (given or {}).items()}
        for k, targets in flat.items():
            for target in targets:
                if k in params and target.partition(".")[0] == param:
                    merged[target.partition(".")[2]] = absolute(k, params[k])
        if given is None and not merged:
            continue
        _check_contract(model, merged, f"{where}.{param}" if given else where, file)
        out[param] = merged
    return out


def _check_contract(model: type[BaseModel], values: dict[str, Any], where: str, file: str) -> None:
    """Values checked by the contract, one line naming the option; a required field left out
    is not an error here (a schedule or the run may give it)."""
    from pydantic import ValidationError

    from flows.runtime.contract import error_line_of

    try:
        model(**values)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if e.get("type") != "missing"]
        if errors:
            err = error_line_of(errors[0], fields=tuple(model.model_fields), file=file)
            raise InputError(err.detail, file=file, field=f"{where}.{err.field}") from None


def _with_defaults(defaults: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A schedule's parameters over the deployment's: Prefect merges them one level deep, so
    the options of both (`options`, the `train` flow's `stage1`/`stage2`) are merged here."""
    merged = dict(params)
    for k, v in params.items():
        if isinstance(v, dict) and isinstance(defaults.get(k), dict):
            merged[k] = {**defaults[k], **v}
    return merged


def load_config(
    path: str | Path | None, flows_by_name: dict[str, Any] | None = None
) -> dict[str, DeploymentConfig]:
    """Parse and check deployments.yaml; every problem is one InputError naming file and field."""
    import yaml

    if path is None:
        return {}
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise InputError(
            "not a file" if path.exists() else "no such file", file=file, field="config"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"not YAML: {exc}".splitlines()[0], file=file) from None
    if not isinstance(data, dict) or set(data) - {"deployments"}:
        raise InputError("expected a mapping with one key, `deployments`", file=file)
    flows_by_name = (
        flows_by_name
        if flows_by_name is not None
        else {k: v[1] for k, v in available_flows().items()}
    )
    known_names = {s.flow_name for s in REGISTRY}
    out: dict[str, DeploymentConfig] = {}
    for name, body in (data.get("deployments") or {}).items():
        where = f"deployments.{name}"
        if name not in known_names:
            raise InputError(
                f"unknown deployment '{name}' (one of: {', '.join(sorted(known_names))})",
                file=file,
                field=where,
            )
        body = body or {}
        if not isinstance(body, dict) or set(body) - {
            "parameters",
            "schedules",
            "description",
            "tags",
        }:
            raise InputError(
                "expected parameters, schedules, description, tags", file=file, field=where
            )
        fl = flows_by_name[name]
        cfg = DeploymentConfig(
            parameters=_check_params(fl, body.get("parameters"), f"{where}.parameters", file),
            description=body.get("description"),
            tags=list(body.get("tags") or []),
        )
        for i, sch in enumerate(body.get("schedules") or []):
            sw = f"{where}.schedules[{i}]"
            if not isinstance(sch, dict) or "cron" not in sch:
                raise InputError("each schedule needs `cron`", file=file, field=sw)
            extra = set(sch) - {"cron", "timezone", "parameters", "slug", "active"}
            if extra:
                raise InputError(
                    f"unknown key '{sorted(extra)[0]}'", file=file, field=f"{sw}.{sorted(extra)[0]}"
                )
            _check_cron(sch["cron"], sch.get("timezone"), sw, file)
            cfg.schedules.append(
                ScheduleSpec(
                    cron=sch["cron"],
                    timezone=sch.get("timezone"),
                    slug=sch.get("slug"),
                    active=bool(sch.get("active", True)),
                    parameters=_with_defaults(
                        cfg.parameters,
                        _check_params(fl, sch.get("parameters"), f"{sw}.parameters", file),
                    ),
                )
            )
        out[name] = cfg
    return out


def build_deployments(
    config_path: str | Path | None = None,
    *,
    work_pool: str | None = None,
    job_variables: dict[str, Any] | None = None,
) -> list[Any]:
    """One RunnerDeployment per importable registered flow, with its configured schedules."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    found = available_flows()
    config = load_config(config_path, {k: v[1] for k, v in found.items()})
    deployments = []
    for name, (spec, fl) in found.items():
        cfg = config.get(name, DeploymentConfig())
        schedules = [
            Cron(s.cron, timezone=s.timezone, parameters=s.parameters, slug=s.slug, active=s.active)
            for s in cfg.schedules
        ]
        kwargs: dict[str, Any] = {}
        if work_pool:
            kwargs.update(work_pool_name=work_pool, job_variables=job_variables or {})
        deployments.append(
            fl.to_deployment(
                name=name,
                description=cfg.description or spec.description,
                tags=sorted({*spec.tags, *cfg.tags}),
                parameters=cfg.parameters or None,
                schedules=schedules or None,
                entrypoint_type=EntrypointType.MODULE_PATH,
                **kwargs,
            )
        )
    return deployments
