"""Batch manifests and the `produce-batch` flow: one video per row, idempotent, fault-isolated.

A manifest (CSV, JSONL, YAML, or a folder of scripts) has one row per video. A row either
points to a script (`script`) or fills the `{placeholders}` of a template script with its other
columns (name, product, language, ...). The reserved columns are `id script template` and the
job options (`flows.video.options.JobOptions`: out, renderer, ..., webhook), validated by it. Structural mistakes (an unknown column, a placeholder without a value, a
bad number) stop the whole batch before anything runs (InputError, exit code 2); a row that
fails while running is recorded with its error and the others go on. A row whose job is
already done (same inputs, same output folder, video present) is skipped, so re-running a
manifest does only what is missing or failed.
"""

import csv
import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

from flows.runtime import progress, webhooks
from flows.runtime.errors import InputError, failure
from flows.runtime.settings import get_settings
from flows.video.finish.template import render_template, template_variables
from flows.video.inputs import check_option_paths, prepare_inputs
from flows.video.options import JobOptions, check_out_folder, check_webhook, option_fields
from flows.video.produce import produce_video
from storage import Job, JobStatus, atomic_write_text, session_scope

OPTION_COLUMNS = option_fields()  # one column per job option, `out` included
RESERVED = ("id", "script", "template", *OPTION_COLUMNS)
_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
_PATH_KEYS = re.compile(
    r"^(avatar|audio|brand|music)(\s*:\s*)(['\"]?)([^'\"#\n]+?)\3\s*$", re.MULTILINE
)
_ID = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class BatchRow:
    """One validated row: a script to produce, where, and with which options."""

    row: int  # 1-based position in the manifest
    id: str
    script: str | None = None  # an existing script
    template: str | None = None  # or a template filled with `variables`
    variables: dict[str, str] = field(default_factory=dict)
    out: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


# --- reading manifests ----------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def read_manifest(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Raw rows and manifest-level settings (YAML `template`, `defaults`) of a manifest."""
    path = Path(path)
    if path.is_dir():
        scripts = sorted(p for p in path.glob("*.md") if not p.name.startswith("."))
        if not scripts:
            raise InputError("the folder holds no *.md scripts", file=str(path))
        return [{"script": str(p.resolve())} for p in scripts], {}
    if not path.is_file():
        raise InputError("no such manifest", file=str(path))
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise InputError("the CSV has no header row", file=str(path))
        blank = [i + 1 for i, name in enumerate(reader.fieldnames) if not (name or "").strip()]
        if blank:
            raise InputError(f"column {blank[0]} has no name", file=str(path), line=1)
        rows = [{k.strip(): _cell(v) for k, v in r.items() if k is not None} for r in reader]
        return rows, {}
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not JSON: {exc.msg}", file=str(path), line=n) from None
            if not isinstance(obj, dict):
                raise InputError("each line must be a JSON object", file=str(path), line=n)
            rows.append({k: _cell(v) for k, v in obj.items()})
        return rows, {}
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"not YAML: {exc}".splitlines()[0], file=str(path)) from None
        settings: dict[str, Any] = {}
        if isinstance(data, dict):
            unknown = set(data) - {"template", "defaults", "rows"}
            if unknown:
                raise InputError(
                    f"unknown key '{sorted(unknown)[0]}' (template, defaults, rows)",
                    file=str(path),
                    field=sorted(unknown)[0],
                )
            settings = {k: data[k] for k in ("template", "defaults") if data.get(k) is not None}
            data = data.get("rows")
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(
                "expected a list of rows (mappings), or a mapping with `rows:`",
                file=str(path),
                field="rows",
            )
        return [{str(k): _cell(v) for k, v in r.items()} for r in data], settings
    raise InputError(
        f"unknown manifest type '{suffix}' (csv, jsonl, yaml or a folder)", file=str(path)
    )


def placeholders(template_text: str) -> list[str]:
    """`{name}` fields of a template, in order of first use (`{{`/`}}` are literal braces)."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(template_text)))


def fill_template(template: Path, variables: dict[str, str]) -> str:
    """The template with its placeholders filled; relative avatar/audio paths made absolute."""
    text = template.read_text(encoding="utf-8")
    text = _PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), text)
    text = text.replace("{{", "{").replace("}}", "}")

    def absolute(m: re.Match) -> str:
        value = m.group(4).strip()
        if Path(value).is_absolute():
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{(template.parent / value).resolve()}"

    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end > 0:
            text = _PATH_KEYS.sub(absolute, text[:end]) + text[end:]
    return text


def jinja_template(path: str | None, source: str) -> str | None:
    """The text of a `{{ name }}` template script (its values become the job's `variables`),
    None for a plain script or a `{name}` template."""
    if not path or not Path(path).is_file():
        return None
    text = Path(path).read_text(encoding="utf-8")
    return text if re.search(r"\{\{\s*[A-Za-z_]", text) or "{%" in text else None


def _absolute(path: str, base: Path) -> str:
    """A manifest path: absolute as given, else relative to the manifest's folder."""
    return str(Path(path) if Path(path).is_absolute() else base / path)


def _row_source(
    n: int,
    values: dict[str, Any],
    template: str | None,
    base: Path,
    templates: dict[str, list[str]],
    source: str,
) -> tuple[str | None, str | None, list[str]]:
    """(script, template, the template's placeholders) of row `n`: exactly one of the two."""
    script, tmpl = values.get("script"), values.get("template") or template
    if script and values.get("template"):
        raise InputError(
            f"row {n}: give either `script` or `template`, not both", file=source, field="template"
        )
    if script:
        return _absolute(str(script), base), None, []
    if not tmpl:
        raise InputError(
            f"row {n}: needs a `script` column or a template (--template)",
            file=source,
            field="script",
        )
    tpath = _absolute(str(tmpl), base)
    if tpath not in templates:
        if not Path(tpath).is_file():
            raise InputError(f"row {n}: no such template {tpath}", file=source, field="template")
        templates[tpath] = placeholders(Path(tpath).read_text(encoding="utf-8"))
    return None, tpath, templates[tpath]


def _check_columns(
    n: int,
    values: dict[str, Any],
    names: list[str],
    tmpl: str | None,
    defaults: dict[str, Any],
    source: str,
) -> None:
    """Every non-reserved column fills a placeholder, and every placeholder has a value."""
    for column in (k for k in values if k not in RESERVED and k not in defaults):
        if column not in names:
            hint = (
                f"the template's placeholders are: {', '.join(names) or 'none'}"
                if tmpl
                else "a row with `script` takes no template variables"
            )
            raise InputError(
                f"row {n}: unknown column '{column}' ({hint}; reserved: {', '.join(RESERVED)})",
                file=source,
                field=column,
            )
    missing = [p for p in names if values.get(p) in (None, "")]
    if missing:
        raise InputError(
            f"row {n}: the template needs a value for '{{{missing[0]}}}'",
            file=source,
            field=missing[0],
        )


def _row_options(n: int, values: dict[str, Any], base: Path, source: str) -> dict[str, Any]:
    """The row's job options (all but `out`), validated by the contract; only those given."""
    given = {c: values[c] for c in OPTION_COLUMNS if c != "out" and values.get(c) is not None}
    if given.get("plan"):
        given["plan"] = _absolute(str(given["plan"]), base)  # like `script`: next to the manifest
    return JobOptions.parse(file=source, row=n, **given).model_dump(mode="json", exclude_unset=True)


def prepare_rows(
    raw: list[dict[str, Any]],
    *,
    source: str = "rows",
    base_dir: Path | None = None,
    template: str | None = None,
    defaults: dict[str, Any] | None = None,
    out_root: str | None = None,
) -> list[BatchRow]:
    """Validate every row before anything runs; raises InputError naming file, row and field."""
    base = Path(base_dir) if base_dir else Path.cwd()
    defaults = defaults or {}
    templates: dict[str, list[str]] = {}
    rows: list[BatchRow] = []
    seen: dict[str, int] = {}  # output folder -> the row writing there
    for n, item in enumerate(raw, start=1):
        values = {**defaults, **{k: v for k, v in item.items() if v is not None}}
        script, tmpl, names = _row_source(n, values, template, base, templates, source)
        jinja = jinja_template(script or tmpl, source)  # a {{ name }} template: filled per job
        if jinja is not None:
            names = template_variables(jinja, file=script or tmpl)
            taken = [v for v in names if v in RESERVED]
            if taken:
                raise InputError(
                    f"the template's variable '{taken[0]}' is a reserved column (a job option); "
                    "rename it in the template",
                    file=script or tmpl,
                    field=taken[0],
                )
        _check_columns(n, values, names, tmpl, defaults, source)
        row_id = str(
            values.get("id") or (Path(script).stem if script and jinja is None else f"row-{n}")
        )
        row_id = _ID.sub("-", row_id).strip("-") or f"row-{n}"
        out = values.get("out")
        out = (
            _absolute(str(out), base)
            if out
            else (str(Path(out_root) / row_id) if out_root else None)
        )
        if out:
            key = str(Path(out).resolve())
            if key in seen:
                raise InputError(
                    f"row {n}: writes to the same folder as row {seen[key]} ({out}); "
                    f"give the rows distinct `id`s",
                    file=source,
                    field="id",
                )
            seen[key] = n
        variables = {k: str(values[k]) for k in names}
        options = _row_options(n, values, base, source)
        if jinja is not None:  # the job fills it (`variables` option): checked here, before any row
            render_template(jinja, variables, file=source, where=f"row {n}")
            script, tmpl, options["variables"], variables = script or tmpl, None, variables, {}
        rows.append(
            BatchRow(
                row=n,
                id=row_id,
                script=script,
                template=tmpl,
                variables=variables,
                out=out,
                options=options,
            )
        )
    return rows


def load_manifest(
    path: str | Path, *, template: str | None = None, out_root: str | None = None
) -> list[BatchRow]:
    """Read and validate a manifest file (or folder of scripts)."""
    path = Path(path)
    raw, settings = read_manifest(path)
    base = path if path.is_dir() else path.parent
    if template and not Path(template).is_absolute():
        template = str(Path.cwd() / template)  # a CLI argument is relative to where it was typed
    if template and not Path(template).is_file():
        raise InputError(f"template script not found: {template}", field="template")
    if out_root:
        try:
            check_out_folder(out_root, "out")
        except ValueError as exc:
            raise InputError(str(exc), field="out") from None
    return prepare_rows(
        raw,
        source=str(path),
        base_dir=base,
        template=template or settings.get("template"),
        defaults=settings.get("defaults"),
        out_root=out_root,
    )


# --- running rows ---------------------------------------------------------------------------


def _row_script(row: BatchRow, out_root: Path) -> Path:
    """The script a row runs: its own, or its filled template (rewritten only on change)."""
    if row.script:
        return Path(row.script)
    text = fill_template(Path(row.template), row.variables)
    folder = Path(row.out) if row.out else out_root / row.id
    dest = folder / "script.md"
    if not dest.is_file() or dest.read_text(encoding="utf-8") != text:
        atomic_write_text(dest, text)
    return dest


def already_done(script: Path, options: JobOptions) -> dict | None:
    """The finished job for these inputs and this output folder, if its video is still there.

    The same input key and output folder rule as `produce-video` (`prepare_inputs`,
    `JobInputs.out_dir`): options outside the key (`force`, `webhook`) never make a row run again.
    """
    from sqlmodel import col, select

    settings = get_settings()
    inputs = prepare_inputs(script, options, settings)  # InputError -> the row fails
    if options.plan:  # a given plan is a new version of the job: run, unchanged segments cached
        return None
    out_dir = str(inputs.out_dir(settings))
    with session_scope(settings.db_url) as s:
        job = s.exec(
            select(Job)
            .where(
                Job.input_key == inputs.input_key,
                Job.out_dir == out_dir,
                Job.status == JobStatus.done,
            )
            .order_by(col(Job.updated_at).desc())
        ).first()
        if job is None or not (Path(out_dir) / "video.mp4").is_file():
            return None
        return {
            "job_id": job.id,
            "out_dir": out_dir,
            "duration": job.duration,
            "gpu_seconds": job.gpu_seconds,
        }


@task(name="batch-row", task_run_name="row-{row[id]}", retries=0)
def run_row(row: dict, out_root: str, defaults: dict[str, Any]) -> dict:
    """Produce one row's video as a `produce-video` subflow; never raises (errors are results)."""
    r = BatchRow(**row)
    result: dict[str, Any] = {
        "row": r.row,
        "id": r.id,
        "status": "failed",
        "job_id": None,
        "out_dir": r.out,
        "video": None,
        "error": None,
        "seconds": 0.0,
    }
    t0 = time.perf_counter()
    try:
        options = JobOptions.parse(**{**defaults, **r.options, "out": r.out})
        script = _row_script(r, Path(out_root))
        result["script"] = str(script)
        done = None if options.force else already_done(script, options)
        if done:
            result.update(done, status="skipped", video=str(Path(done["out_dir"]) / "video.mp4"))
        else:
            report = produce_video(script=str(script), options=options)
            result.update(
                status="done",
                job_id=report["job_id"],
                out_dir=report["out_dir"],
                video=report["outputs"]["video"],
                duration=report["duration"],
                segments=report["segments"],
                segments_rendered=report["segments_rendered"],
                gpu_seconds=report.get("gpu_seconds"),
            )
    except Exception as exc:  # one bad row must not stop the others
        result["error"] = failure(exc).line
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def check_batch_webhook(webhook: str | None) -> None:
    """The batch summary's webhook, checked like a job's (before any row runs)."""
    if webhook is not None:
        try:
            check_webhook(webhook)
        except ValueError as exc:
            raise InputError(str(exc), field="webhook") from None


def batch_root(manifest: str | None, out_root: str | None) -> Path:
    """Where a batch writes (CLI, SDK and Prefect runs alike): `out_root`, else
    <AVATAR_FLOW_HOME>/batches/<manifest name>."""
    if out_root:
        return Path(out_root).expanduser().resolve()
    return get_settings().home / "batches" / (Path(manifest).stem if manifest else "batch")


def summarize(results: list[dict]) -> dict[str, int]:
    counts = {"done": 0, "skipped": 0, "failed": 0}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    counts["total"] = len(results)
    return counts


@flow(name="produce-batch", log_prints=False)
def produce_batch(
    manifest: str | None = None,
    template: str | None = None,
    out_root: str | None = None,
    concurrency: int = 1,
    options: JobOptions = JobOptions(),  # noqa: B008
    webhook: str | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> dict:
    """Produce one video per manifest row; failing rows are reported, the others finish.

    Args:
        manifest: CSV, JSONL or YAML manifest, or a folder of scripts (one video per `*.md`).
        template: Template script whose `{placeholders}` the rows fill (or a `template` column).
        out_root: Folder for the videos (one sub-folder per row id) and batch.json.
        concurrency: How many rows run at once.
        options: Job options for every row; a row's own columns win (`out` is per row).
        webhook: URL called with an HMAC-signed summary when the batch finishes.
        rows: Rows given directly (SDK) instead of a manifest file.
    """
    if (manifest is None) == (rows is None):
        raise InputError("give either a manifest or rows", field="manifest")
    if concurrency < 1:
        raise InputError(f"concurrency must be at least 1, got {concurrency}", field="concurrency")
    check_batch_webhook(webhook)
    check_option_paths(options)
    if options.out is not None:
        raise InputError(
            "out is set per row (the `out` column, or out_root/<id>)", field="options.out"
        )
    root = batch_root(manifest, out_root)
    if manifest is not None:
        batch_rows = load_manifest(manifest, template=template, out_root=str(root))
    else:
        batch_rows = prepare_rows(
            rows or [], template=template, out_root=str(root) if out_root else None
        )
    defaults = options.model_dump(mode="json", exclude={"out"})
    started = time.time()
    progress.emit("batch", 0, len(batch_rows))
    results: list[dict] = []
    lock = threading.Lock()
    with ThreadPoolTaskRunner(max_workers=concurrency) as runner:
        futures = [
            runner.submit(run_row, {"row": asdict(r), "out_root": str(root), "defaults": defaults})
            for r in batch_rows
        ]
        for fut in futures:
            res = fut.result()
            with lock:
                results.append(res)
                progress.emit(
                    "batch", len(results), len(batch_rows), f"{res['id']}: {res['status']}"
                )
    results.sort(key=lambda r: r["row"])
    report = {
        "manifest": str(manifest) if manifest else None,
        "out_root": str(root),
        "started_at": started,
        "seconds": round(time.time() - started, 2),
        "summary": summarize(results),
        "rows": results,
    }
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "batch.json", json.dumps(report, indent=1, default=str) + "\n")
    report["report"] = str(root / "batch.json")
    if webhook:
        webhooks.deliver(
            webhook,
            {
                "event": "batch.finished",
                "finished_at": webhooks.now(),
                "manifest": report["manifest"],
                "summary": report["summary"],
                "report": report["report"],
                "rows": [
                    {k: r.get(k) for k in ("id", "status", "job_id", "video", "error")}
                    for r in results
                ],
            },
        )
    return report
