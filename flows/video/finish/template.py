"""Script templates: `{{ name }}` placeholders filled per job (CLI `--var`, SDK `variables=`,
batch manifest columns).

The text is rendered by jinja2's SandboxedEnvironment with StrictUndefined, so a template can
only read the values it is given: no attribute access to Python internals, no imports, no code.
A missing, unknown or empty variable is one InputError naming where the value came from (the
flag or the manifest row) and the variable, raised before any speech is synthesised.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from flows.runtime.errors import InputError

_MARKERS = ("{{", "{%", "{#")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BAD_VALUE = re.compile(r"[\r\n\x00-\x08\x0b\x0c\x0e-\x1f]|\[\[|\]\]|---")


def _env() -> SandboxedEnvironment:
    # keep_trailing_newline: the Markdown body is reproduced byte for byte outside placeholders.
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


def is_template(text: str) -> bool:
    """Does the text use template syntax at all (a plain script is never rendered)?"""
    return any(m in text for m in _MARKERS)


def template_variables(text: str, *, file: str | None = None) -> list[str]:
    """The variables a template reads, sorted; [] for a plain script."""
    if not is_template(text):
        return []
    env = _env()
    try:
        ast = env.parse(text)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise InputError(f"bad template: {exc.message}", file=file, line=line) from None
    return sorted(meta.find_undeclared_variables(ast))


def check_values(variables: Mapping[str, object], *, where: str) -> dict[str, str]:
    """Variables as clean one-line strings; an empty value or one that would change the script's
    structure (a line break, a `[[cue]]`, a front-matter fence) is an InputError."""
    clean: dict[str, str] = {}
    for name, value in variables.items():
        if not _NAME.match(str(name)):
            raise InputError(
                f"{where}: '{name}' is not a variable name (letters, digits, _)", field=str(name)
            )
        text = "" if value is None else str(value).strip()
        if not text:
            raise InputError(f"{where}: variable '{name}' is empty", field=str(name))
        if _BAD_VALUE.search(text):
            raise InputError(
                f"{where}: variable '{name}' must be one line of text without [[ ]] or ---, "
                f"got {text!r}",
                field=str(name),
            )
        clean[str(name)] = text
    return clean


def render_template(
    text: str,
    variables: Mapping[str, object] | None,
    *,
    file: str | None = None,
    where: str = "--var",
) -> str:
    """Fill a template's placeholders with exactly the variables it reads.

    `where` names the source of the values in errors ("--var", "row 3", "variables"). A plain
    script with no variables is returned unchanged; a plain script given variables is an error
    (every value must be used, or a typo in a name would pass silently).
    """
    values = check_values(variables or {}, where=where)
    names = template_variables(text, file=file)
    unknown = sorted(set(values) - set(names))
    if unknown:
        used = ", ".join(names) if names else "none: the script is not a template"
        raise InputError(
            f"{where}: unknown variable '{unknown[0]}' (the template's variables: {used})",
            file=file,
            field=unknown[0],
        )
    missing = [n for n in names if n not in values]
    if missing:
        name = missing[0]
        hint = f"a '{name}' column" if where.startswith("row") else f"--var {name}=..."

        raise InputError(
            f"{where}: the template needs a value for '{name}' ({hint})",
            file=file,
            field=name,
        )
    if not names:
        return text
    try:
        return _env().from_string(text).render(**values)
    except TemplateError as exc:  # a sandbox refusal or a filter misuse
        raise InputError(f"{where}: cannot fill the template: {exc}", file=file) from None
