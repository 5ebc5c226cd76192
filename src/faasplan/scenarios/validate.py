"""Check a scenario or a WfFormat trace and explain every problem at once.

Loading a file stops at its first error; :func:`validate_file` goes on and lists them all:

* a WfFormat trace (``.json``, ``.json.gz``) is checked against the official WfFormat 1.5
  JSON Schema shipped in :mod:`faasplan.data` (every violation, with its JSON path; schema
  1.4 traces skip this step), then by faasplan's importer (references, cycles, runtimes);
* a scenario (``.toml``) is checked key by key (every invalid key, with its path), then the
  files it names (traces, metrics, profiles, platform files) are looked for and the traces it
  names are checked in turn; a ``[workflow] wfchef`` instance is checked against its recipe
  (the ``wfcommons`` extra installed, enough tasks for the recipe's smallest instance).
"""

from __future__ import annotations

import gzip
import json
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Problem", "validate_file"]


@dataclass(frozen=True)
class Problem:
    """One problem of a file: where (file and key path), what, and how to fix it."""

    file: str
    key: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.message}" + (f" ({self.fix})" if self.fix else "")

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return asdict(self)


def validate_file(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem of a scenario ``.toml`` or a WfFormat trace; empty when it is valid."""
    where = os.fspath(path)
    if not Path(where).is_file():
        return [Problem(where, "", "file not found", "check the path")]
    if where.endswith(".toml"):
        return _scenario_problems(where)
    if where.endswith((".json", ".json.gz")):
        return _trace_problems(where)
    return [Problem(where, "", "not a scenario (.toml) or a WfFormat trace (.json, .json.gz)",
                    "give one of those")]


# -- traces -------------------------------------------------------------------------------
def _trace_problems(where: str) -> list[Problem]:
    import jsonschema

    from faasplan.data import SCHEMA_PATH
    from faasplan.workflow import WorkflowError, load_wfformat

    try:
        raw = Path(where).read_bytes()
        text = (gzip.decompress(raw) if where.endswith(".gz") else raw).decode("utf-8")
        doc = json.loads(text)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        return [Problem(where, "", f"unreadable: {exc}", "give a UTF-8 JSON file")]
    except json.JSONDecodeError as exc:
        return [Problem(where, "", f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                                   f"{exc.msg}", "fix the JSON syntax")]
    except RecursionError:
        return [Problem(where, "", "JSON nested too deeply", "give a WfFormat trace")]
    problems: list[Problem] = []
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft4Validator(schema)
    # The shipped schema is 1.5's; 1.4 traces (an older layout) get the importer's checks.
    legacy = isinstance(doc, dict) and str(doc.get("schemaVersion")) == "1.4"
    errors = [] if legacy else list(validator.iter_errors(doc))
    for error in sorted(errors, key=lambda e: [str(p) for p in e.path]):
        key = ".".join(str(p) for p in error.absolute_path) or "(document)"
        problems.append(Problem(where, key, f"WfFormat schema: {error.message}",
                                "see the WfFormat 1.5 specification"))
    try:
        load_wfformat(where)
    except WorkflowError as exc:
        message = str(exc)
        prefix = f"{where}: "
        message = message[len(prefix):] if message.startswith(prefix) else message
        problems.append(Problem(where, getattr(exc, "field", None) or "", message,
                                "faasplan's importer needs this to build the workflow"))
    return problems


# -- scenarios ----------------------------------------------------------------------------
def _scenario_problems(where: str) -> list[Problem]:
    from pydantic import ValidationError

    from faasplan.scenarios.load import ScenarioError, validate_scenario
    from faasplan.scenarios.schema import Scenario

    try:
        data = tomllib.loads(Path(where).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return [Problem(where, "", f"invalid TOML: {exc}", "fix the TOML syntax")]
    problems: list[Problem] = []
    try:
        Scenario.model_validate(data)
    except ValidationError as exc:
        problems += [Problem(where, ".".join(str(p) for p in err["loc"]) or "(document)",
                             err["msg"], _fix_for(err))
                     for err in exc.errors()]
    else:
        try:
            validate_scenario(data, where)
        except ScenarioError as exc:
            problems.append(Problem(where, exc.key, exc.message, exc.hint))
    problems.extend(_wfchef_problems(where, data))
    base = Path(where).resolve().parent
    for key, value in _named_files(data):
        target = Path(value).expanduser()
        target = target if target.is_absolute() else base / target
        if not target.is_file():
            problems.append(Problem(where, key, f"file not found: {target}",
                                    "paths are relative to the scenario file"))
        elif key.startswith(("workflow.wfformat", "history.traces")):
            problems.extend(_trace_problems(str(target)))
    return problems


def _wfchef_problems(where: str, data: dict[str, Any]) -> list[Problem]:
    """What generating a well-formed ``[workflow] wfchef`` table would run into."""
    from faasplan.scenarios.schema import WfChefSection
    from faasplan.workloads.wfchef import INSTALL_HINT, MissingExtraError, min_tasks

    workflow = data.get("workflow")
    table = workflow.get("wfchef") if isinstance(workflow, dict) else None
    if not isinstance(table, dict):
        return []
    try:
        spec = WfChefSection.model_validate(table)
    except ValueError:
        return []  # already reported, key by key
    key = "workflow.wfchef"
    try:
        smallest = min_tasks(spec.recipe)
    except MissingExtraError as exc:
        return [Problem(where, key, str(exc), f"run {INSTALL_HINT}")]
    if spec.tasks < smallest:
        return [Problem(where, f"{key}.tasks", f"recipe {spec.recipe!r} cannot make "
                        f"{spec.tasks} tasks: its smallest instance has {smallest}",
                        f"ask for tasks >= {smallest}")]
    return []


def _named_files(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The files a scenario names, read from its raw TOML (so that they are checked even
    when other keys are invalid)."""
    out: list[tuple[str, str]] = []
    sections = {k: v for k, v in data.items() if isinstance(v, dict)}
    for section, key in (("workflow", "wfformat"), ("workflow", "profile_file"),
                         ("history", "metrics"), ("platform", "file")):
        value = sections.get(section, {}).get(key)
        if isinstance(value, str) and value:
            out.append((f"{section}.{key}", value))
    traces = sections.get("history", {}).get("traces", [])
    if isinstance(traces, list):
        out += [(f"history.traces[{i}]", t) for i, t in enumerate(traces) if isinstance(t, str)]
    return out


def _fix_for(err: Any) -> str:
    kind = str(err.get("type", ""))
    if kind == "extra_forbidden":
        return "remove the key or check its spelling"
    if kind == "missing":
        return "add the key"
    return "see the scenario reference in the README"
