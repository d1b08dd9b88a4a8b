"""Which flows are deployed, and their schedules from deployments.yaml.

The registry names each deployable flow by its Prefect flow name and the modules that may
define it. Flows whose modules do not exist yet (dataset building, training) are skipped
silently and appear by themselves once they are written. Deployments use module-path
entrypoints (`flows.produce.produce_video`), so a worker on another machine only needs
avatar-flow installed — no image, no remote storage.

deployments.yaml:

    deployments:
      produce-video:
        parameters: {renderer: animatic}        # defaults shown in the UI's Run form
        schedules:
          - cron: "0 9 * * mon"
            timezone: Europe/Berlin
            slug: weekly-update
            parameters: {script: /srv/scripts/weekly.md, out: /srv/videos/weekly}

Relative paths in `script`, `manifest`, `template`, `out`, `out_root` and `checkpoint` are
resolved against the folder of the YAML file.
"""

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.errors import InputError


@dataclass(frozen=True)
class DeploymentSpec:
    """A flow (by Prefect name) to deploy, and where it may be defined."""

    flow_name: str
    modules: tuple[str, ...]  # module names or fnmatch patterns under flows/
    description: str
    tags: tuple[str, ...] = ("avatar-flow",)


REGISTRY: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        "produce-video", ("flows.produce",), "Turn a script into a finished talking-avatar video."
    ),
    DeploymentSpec(
        "produce-batch",
        ("flows.batch",),
        "One video per row of a batch manifest (CSV, JSONL, YAML or a script folder).",
    ),
    DeploymentSpec(
        "build-dataset",
        ("flows.dataset*",),
        "Build a phase-annotated training dataset from raw clips.",
    ),
    DeploymentSpec(
        "train-stage1",
        ("flows.train*",),
        "Stage 1: train the audio adapter on the frozen text-to-video backbone.",
    ),
    DeploymentSpec(
        "train-stage2",
        ("flows.train*",),
        "Stage 2: fine-tune the image-to-video model with the adapter and phases.",
    ),
    DeploymentSpec("train", ("flows.train*",), "Train ActAvatar (both stages)."),
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


def _module_names(pattern: str) -> list[str]:
    """Modules under flows/ matching `flows.train*`-style patterns (exact names pass through)."""
    if "*" not in pattern:
        return [pattern]
    import fnmatch

    import flows

    found = [f"flows.{m.name}" for m in pkgutil.iter_modules(flows.__path__)]
    return sorted(n for n in found if fnmatch.fnmatch(n, pattern))


def find_flow(spec: DeploymentSpec) -> Any | None:
    """The Prefect flow named `spec.flow_name`, or None if no module defines it (yet)."""
    from prefect import Flow

    for pattern in spec.modules:
        for name in _module_names(pattern):
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            for obj in vars(module).values():
                if isinstance(obj, Flow) and obj.name == spec.flow_name:
                    return obj
    return None


def available_flows() -> dict[str, tuple[DeploymentSpec, Any]]:
    """Registry entries whose flow can be imported now, by flow name."""
    out = {}
    for spec in REGISTRY:
        fl = find_flow(spec)
        if fl is not None:
            out[spec.flow_name] = (spec, fl)
    return out


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


PATH_PARAMETERS = ("script", "manifest", "template", "out", "out_root", "checkpoint")


def _check_params(fl: Any, params: Any, where: str, file: str) -> dict[str, Any]:
    """Known parameter names only; relative paths resolve against the YAML file's folder."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InputError("parameters must be a mapping", file=file, field=where)
    known = set(inspect.signature(fl.fn).parameters)
    for k in params:
        if k not in known:
            raise InputError(
                f"unknown parameter '{k}' for flow {fl.name} (one of: {', '.join(sorted(known))})",
                file=file,
                field=f"{where}.{k}",
            )
    base = Path(file).resolve().parent
    return {
        k: str(base / v)
        if k in PATH_PARAMETERS and isinstance(v, str) and v and not Path(v).is_absolute()
        else v
        for k, v in params.items()
    }


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
        raise InputError("no such file", file=file)
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
        fl = flows_by_name.get(name)
        if fl is None:
            continue  # configured for a flow not built yet: nothing to serve
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
                    parameters=_check_params(fl, sch.get("parameters"), f"{sw}.parameters", file),
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
