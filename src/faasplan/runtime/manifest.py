"""What the client stores once per run for its workers, and the invocation queue entries.

The *manifest* is the run's :class:`~faasplan.worker.RunSpec` (DAG shape, placements,
thresholds) plus run settings; it holds no code and no arguments, so it stays small.
A worker fetches it once per run and keeps it while warm. Code and arguments travel in
the DAG (:mod:`faasplan.workflow.codec`): as a subDAG blob inline in an invocation below
the inline threshold, else as the content-addressed parts of each task a worker runs.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from faasplan.runtime.security import Signer
from faasplan.worker import Invocation, Placement, RunSpec, WorkerOptions
from faasplan.workflow import Workflow
from faasplan.workflow.codec import (
    DagParts,
    EncodedWorkflow,
    dag_sizes,
    encode_with_parts,
    literal_refs,
)

DEFAULT_MEMORY_MB = 1024


@dataclass(frozen=True)
class RunManifest:
    """Read-only facts every worker of one run needs: the RunSpec (as plain data) and
    run settings."""

    run_id: str
    workflow_name: str
    workflow_hash: str
    planner: str
    requirements: tuple[str, ...]
    sinks: tuple[str, ...]
    spec_fields: Mapping[str, Any]
    literal_sizes: Mapping[str, int]
    lease_ms: int
    stream_chunk_bytes: int
    epoch: str = ""
    """Random per run() call: a warm worker holding a manifest of an earlier run with the
    same id notices that it is stale, and every sealed payload of the run is bound to it
    (:func:`payload_context`), so nothing left over by an earlier run with the same id
    authenticates."""
    key_ttl_ms: int = 0
    """Time to live of every key the run's workers create (0: none)."""

    def to_spec(self) -> RunSpec:
        """The RunSpec the worker logic runs on."""
        fields: dict[str, Any] = {k: MappingProxyType(v) if isinstance(v, dict) else v
                                  for k, v in self.spec_fields.items()}
        return RunSpec(**fields)


def spec_fields(spec: RunSpec) -> dict[str, Any]:
    """The public fields of ``spec`` with read-only mappings turned into picklable dicts."""
    return {f.name: dict(v) if isinstance(v := getattr(spec, f.name), Mapping) else v
            for f in dataclasses.fields(spec) if not f.name.startswith("_")}


@dataclass(frozen=True)
class PreparedRun:
    """A workflow made ready to run: its spec, its encoding and the manifest."""

    workflow: Workflow
    spec: RunSpec
    encoded: EncodedWorkflow
    manifest: RunManifest
    parts: DagParts | None = None
    """The DAG's content-addressed parts, stored for workers started by reference."""


def resolve_placements(wf: Workflow, plan: Any) -> Mapping[str, Placement]:
    """Placements from ``plan``: ``None`` (all flexible, 1024 MB), a mapping, or ``.placements``.

    Raises ``KeyError`` naming a task without a placement, ``ValueError`` naming ids that
    are not tasks of the workflow, ``TypeError`` for a value that is not a Placement.
    """
    if plan is None:
        return {tid: Placement(None, DEFAULT_MEMORY_MB) for tid in wf.topological_order}
    mapping = plan if isinstance(plan, Mapping) else getattr(plan, "placements", None)
    if not isinstance(mapping, Mapping):
        raise TypeError(f"plan must be None, a mapping task id -> Placement or an object with "
                        f".placements, got {type(plan).__name__}")
    unknown = sorted(set(mapping) - set(wf.topological_order))
    if unknown:
        raise ValueError(f"plan places {unknown[:5]} which are not tasks of workflow "
                         f"{wf.name!r}; was it made for another workflow?")
    missing = [t for t in wf.topological_order if t not in mapping]
    if missing:
        raise KeyError(f"plan has no placement for task {missing[0]!r} of workflow "
                       f"{wf.name!r} ({len(missing)} task(s) unplaced)")
    for tid, p in mapping.items():
        if not isinstance(p, Placement):
            raise TypeError(f"plan: placement of task {tid!r} is {type(p).__name__}, "
                            "expected faasplan.worker.Placement")
    # A plan's placements keep their workers' own task orders.
    return mapping if getattr(mapping, "worker_orders", None) else dict(mapping)


def planner_name(plan: Any) -> str:
    """How metrics name the planner of ``plan``."""
    if plan is None:
        return "flexible"
    for attr in ("planner", "name"):
        value = getattr(plan, attr, None)
        if isinstance(value, str) and value:
            return value
    return "manual"


def prepare_run(wf: Workflow, placements: Mapping[str, Placement], *, run_id: str,
                planner: str, options: WorkerOptions, lease_ms: int,
                stream_chunk_bytes: int, epoch: str = "", key_ttl_ms: int = 0
                ) -> PreparedRun:
    """Encode ``wf`` and build the spec and manifest of one run."""
    encoded, parts = encode_with_parts(wf)
    literals = {tid: tuple((ref.id, ref.nbytes) for ref in refs if ref.id in encoded.payloads)
                for tid, refs in literal_refs(wf).items()}
    sizes = dag_sizes(wf, encoded, parts)
    spec = RunSpec.build(wf, placements, options,
                         literals={t: v for t, v in literals.items() if v},
                         task_nbytes=sizes.task_nbytes, code_nbytes=sizes.code_nbytes,
                         dag_parts=sizes.parts)
    manifest = RunManifest(
        run_id=run_id, workflow_name=wf.name, workflow_hash=wf.structure_hash,
        planner=planner, requirements=tuple(wf.requirements), sinks=tuple(wf.sinks),
        spec_fields=spec_fields(spec),
        literal_sizes={ref_id: size for refs in literals.values() for ref_id, size in refs},
        lease_ms=lease_ms, stream_chunk_bytes=stream_chunk_bytes, epoch=epoch,
        key_ttl_ms=key_ttl_ms)
    return PreparedRun(wf, spec, encoded, manifest, parts)


def payload_context(run_id: str, epoch: str, key: str) -> str:
    """What the MAC of a stored payload is bound to: run id, run instance and key.

    >>> payload_context("nightly", "9f2c", "out:a")
    'nightly/9f2c/out:a'
    """
    return f"{run_id}/{epoch}/{key}"


def pack_manifest(signer: Signer, manifest: RunManifest) -> bytes:
    """The sealed, compressed manifest (its per-task records repeat much: ~8x smaller)."""
    data = zlib.compress(pickle.dumps(manifest, protocol=5), 1)
    return signer.seal(f"{manifest.run_id}/manifest", data)


def unpack_manifest(signer: Signer, run_id: str, sealed: bytes) -> RunManifest:
    """Verify, decompress and load a manifest written by :func:`pack_manifest`."""
    manifest = pickle.loads(zlib.decompress(signer.open(f"{run_id}/manifest", sealed)))
    if not isinstance(manifest, RunManifest) or manifest.run_id != run_id:
        raise TypeError(f"run {run_id}: its manifest key holds a {type(manifest).__name__}")
    return manifest


# -- invocation queue entries ---------------------------------------------------------------
@dataclass(frozen=True)
class QueuedInvocation:
    """One queue entry: the invocation, its id, and the inline DAG blob when it has one.

    ``inv_id`` is the same for every push of the same logical invocation (retries and
    duplicates), so a worker claims it at most once at a time.
    """

    run_id: str
    inv_id: str
    invocation: Invocation
    blob: bytes | None
    enqueued_at: float
    epoch: str = ""


def invocation_id(invocation: Invocation, nonce: str = "") -> str:
    """Deterministic id of an invocation (``w:<worker>`` or ``t:<roots>``); pre-warms are unique."""
    if invocation.prewarm:
        return f"warm:{invocation.memory_mb}:{nonce}"
    if invocation.worker is not None:
        return f"w:{invocation.worker}"
    return "t:" + ",".join(invocation.roots)


def seal_invocation(signer: Signer, queued: QueuedInvocation) -> bytes:
    """The sealed invocation (what the run's ``items`` hash keeps for its id)."""
    return signer.dumps(f"{queued.run_id}/inv", queued)


def open_invocation(signer: Signer, run_id: str, sealed: bytes | memoryview
                    ) -> QueuedInvocation:
    """Verify and decode a sealed invocation; :class:`PayloadAuthError` if tampered with."""
    queued = pickle.loads(signer.open(f"{run_id}/inv", sealed))
    if not isinstance(queued, QueuedInvocation) or queued.run_id != run_id:
        raise TypeError(f"invocation entry of run {run_id!r} does not hold a QueuedInvocation")
    return queued


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A parsed queue entry.

    Registered invocations travel by *reference* (run, epoch, id): the sealed invocation
    is stored once, in the run's ``items`` hash, and the worker gets it with its claim.
    Pre-warms are not registered and travel *embedded* (``sealed``). Nothing here is
    authenticated: a forged reference only names an invocation whose sealed body the
    worker checks (and compares ids) before using it.
    """

    run_id: str
    epoch: str
    inv_id: str
    sealed: memoryview | None = None


def reference_entry(run_id: str, epoch: str, inv_id: str) -> bytes:
    """Queue entry naming a registered invocation."""
    return b"R" + "\n".join((run_id, epoch, inv_id)).encode()


def embedded_entry(run_id: str, sealed: bytes) -> bytes:
    """Queue entry carrying a sealed invocation (pre-warms)."""
    return b"E" + run_id.encode() + b"\n" + sealed


def parse_entry(entry: bytes) -> QueueEntry:
    """Split a queue entry; ``ValueError`` if it has neither form."""
    kind, body = entry[:1], memoryview(entry)[1:]
    if kind == b"R":
        parts = bytes(body).decode("utf-8", "replace").split("\n")
        if len(parts) == 3:
            return QueueEntry(parts[0], parts[1], parts[2])
    elif kind == b"E":
        head = bytes(body[:256]).partition(b"\n")[0]
        run_id = head.decode("utf-8", "replace")
        return QueueEntry(run_id, "", "", body[len(head) + 1:])
    raise ValueError(f"malformed queue entry ({len(entry)} bytes, starts with {entry[:12]!r})")


def now_ms() -> float:
    """Wall-clock milliseconds (comparable between processes on one host)."""
    return time.time() * 1000.0
