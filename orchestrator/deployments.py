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
are moved into the flow's `options` parameter (`flows.video.options.JobOptions`). Relative paths
in `script`, `manifest`, `template`, `out`, `out_root`, `checkpoint` and `plan` resolve against the
folder of the YAML file.
"""

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _check_params(fl: Any, params: Any, where: str, file: str) -> dict[str, Any]:
    """Known parameter names only; flat job options folded into `options`; relative paths
    resolve against the YAML file's folder."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InputError("parameters must be a mapping", file=file, field=where)
    signature = inspect.signature(fl.fn).parameters
    option_names: tuple[str, ...] = ()
    if "options" in signature:
        from flows.video.options import option_fields

        option_names = option_fields()
    known = set(signature) | set(option_names)
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
    flat = {k: absolute(k, v) for k, v in params.items() if k not in signature}
    if flat or isinstance(out.get("options"), dict):
        nested = {k: absolute(k, v) for k, v in (out.get("options") or {}).items()}
        merged = {**nested, **flat}
        from flows.video.options import JobOptions, input_error

        try:
            JobOptions(**merged)
        except Exception as exc:  # pydantic's ValidationError: one line naming the option
            err = input_error(exc, file=file)
            raise InputError(err.detail, file=file, field=f"{where}.{err.field}") from None
        out["options"] = merged
    return out


def _with_defaults(defaults: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A schedule's parameters over the deployment's: Prefect merges them one level deep, so
    the job options of both are merged here."""
    if "options" in params and "options" in defaults:
        return {**params, "options": {**defaults["options"], **params["options"]}}
    return params


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
