"""Recorded task profiles: measure a workflow once, reuse the numbers in every later run.

Measuring a workflow (:func:`~faasplan.workflow.local.profile`) times its tasks with the wall
clock of this machine, so two measurements never agree exactly. A scenario that should give the same
numbers for the same seed records the measurement once (``faasplan profile TARGET --out
FILE``) and names the file in ``[workflow] profile_file``.
"""

from __future__ import annotations

import json
import os
import platform as host
from pathlib import Path
from typing import Any

from faasplan.workflow import TaskNode, TaskProfile, Workflow, map_leaves

FORMAT = "faasplan-profile/1"


class ProfileFileError(ValueError):
    """A profile file that cannot be read or does not match the workflow."""


def record_profile(wf: Workflow, path: str | os.PathLike[str], *, repeat: int = 1
                   ) -> dict[str, TaskProfile]:
    """Run ``wf`` in this process, time every task and write the profile to ``path``.

    Returns the profiles by task id, as :func:`load_profile` reads them back.
    """
    from faasplan.workflow.local import profile

    profiles = profile(wf, repeat=repeat)
    doc: dict[str, Any] = {
        "format": FORMAT, "workflow": wf.name, "structure_hash": wf.structure_hash,
        "repeat": repeat, "machine": f"{host.node()} ({host.machine()}, {host.python_version()})",
        "tasks": {tid: {"exec_ms": p.exec_ms, "output_bytes": p.output_bytes}
                  for tid, p in profiles.items()},
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return profiles


def load_profile(path: str | os.PathLike[str], wf: Workflow) -> dict[str, TaskProfile]:
    """Read a profile written by :func:`record_profile` and check it is ``wf``'s.

    Raises
    ------
    ProfileFileError
        The file is missing, not a profile, or was recorded for another workflow.
    """
    p = Path(path)
    if not p.is_file():
        raise ProfileFileError(f"profile file not found: {p}; record it with "
                               f"'faasplan profile TARGET --out {p}'")
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ProfileFileError(f"{p} is not a readable JSON profile: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ProfileFileError(f"{p} is not a faasplan profile (no \"format\": {FORMAT!r})")
    try:
        profiles = {str(tid): TaskProfile(float(v["exec_ms"]), int(v["output_bytes"]))
                    for tid, v in doc["tasks"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProfileFileError(f"{p}: malformed task entry: {exc}") from None
    # Task ids, not the structure hash, decide: the ids are what the profile is keyed by.
    missing = sorted(set(wf.topological_order) - set(profiles))
    extra = sorted(set(profiles) - set(wf.topological_order))
    if missing or extra:
        raise ProfileFileError(
            f"{p} was recorded for another workflow ({doc.get('workflow')!r}, "
            f"{len(profiles)} tasks), not for {wf.name!r} ({len(wf)} tasks): "
            + (f"no profile for {missing[:3]}" if missing else f"unknown tasks {extra[:3]}")
            + f"; record it again with 'faasplan profile TARGET --out {p}'")
    return profiles


def with_profiles(wf: Workflow, profiles: dict[str, TaskProfile]) -> Workflow:
    """A copy of ``wf`` whose nodes carry ``profiles`` (``wf`` itself is not changed)."""
    new: dict[str, TaskNode] = {}

    def convert(node: TaskNode) -> TaskNode:
        return new[wf.id_of(node)]

    for tid in wf.topological_order:
        node = wf.tasks[tid]
        args, kwargs = map_leaves((node.args, node.kwargs), convert, TaskNode)
        new[tid] = TaskNode(node.func, args, kwargs, tid, profiles.get(tid, node.profile))
    sinks = [new[t] for t in wf.sinks]
    return Workflow(sinks, name=wf.name, requirements=wf.requirements, detect=False)
