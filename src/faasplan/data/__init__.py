"""Real data shipped with faasplan: a few WfCommons traces and the WfFormat 1.5 schema.

The traces are real workflow runs from the WfCommons ``WfInstances`` and
``pegasus-instances`` repositories (LGPL-3.0), kept so that tests, scenarios, notebooks and
the README work on a fresh install. See ``README.md`` in this folder for their provenance.

>>> trace_path("montage_58t").name
'montage_58t.json'
>>> "montage_1738t" in trace_names()
True
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DATA_DIR", "SCHEMA_PATH", "TRACES_DIR", "trace_names", "trace_path"]

#: The folder holding the shipped data files.
DATA_DIR: Path = Path(__file__).resolve().parent
#: The shipped real traces (small ones as ``.json``, large ones as ``.json.gz``).
TRACES_DIR: Path = DATA_DIR / "traces"
#: The WfFormat 1.5 JSON Schema (``wfcommons/WfFormat`` tag ``v1.5``).
SCHEMA_PATH: Path = DATA_DIR / "wfformat" / "wfcommons-schema.json"


def trace_names() -> list[str]:
    """Names of the shipped traces, sorted (e.g. ``"montage_58t"``)."""
    names = {p.name.split(".json")[0] for p in TRACES_DIR.iterdir() if ".json" in p.name}
    return sorted(names)


def trace_path(name: str) -> Path:
    """Path of a shipped trace by name (``"montage_58t"``, with or without ``.json``).

    Raises
    ------
    KeyError
        No shipped trace has that name; the message lists the names there are.
    """
    stem = name.removesuffix(".gz").removesuffix(".json")
    for candidate in (TRACES_DIR / f"{stem}.json", TRACES_DIR / f"{stem}.json.gz"):
        if candidate.is_file():
            return candidate
    raise KeyError(f"no shipped trace named {name!r}; shipped traces: "
                   f"{', '.join(trace_names())}")
