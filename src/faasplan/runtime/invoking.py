"""Starting invocations: registering and pushing them, the subDAG they carry inline, and
the DAG parts a worker started by reference holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import networkx as nx
import redis.asyncio as aioredis

from faasplan.runtime.keys import RunKeys, pool_queue
from faasplan.runtime.manifest import (
    QueuedInvocation,
    embedded_entry,
    reference_entry,
)
from faasplan.worker import Invocation, RunSpec
from faasplan.workflow import TaskFunction, TaskNode, Workflow, map_leaves
from faasplan.workflow.codec import (
    FUNCTION_PART_PREFIX,
    CodeCache,
    ExternalRef,
    TaskPart,
    encode,
    encode_subdag,
    load_function_part,
    load_task_part,
)

EXTERNAL_FUNCTION = "faasplan.external"
"""Function name of the placeholders that stand for inputs produced outside a subDAG."""


async def enqueue(client: aioredis.Redis, keys: RunKeys, pool: str, queued: QueuedInvocation,
                  sealed: bytes) -> None:
    """Register (unless a pre-warm) and push one invocation, atomically."""
    await enqueue_many(client, keys, pool, [(queued, sealed)], transaction=True)


async def enqueue_many(client: aioredis.Redis, keys: RunKeys, pool: str,
                       batch: list[tuple[QueuedInvocation, bytes]], *,
                       transaction: bool = False, ttl_ms: int = 0,
                       expire: Iterable[str] = ()) -> None:
    """Register and push invocations in one round trip (registration before the push).

    A registered invocation is stored once, in the run's ``items`` hash; its queue entry
    is a reference. Pre-warms travel embedded. ``ttl_ms`` (0: none): after the pushes,
    in the same round trip, set this expiry on the run's invocation keys, the queues
    pushed to and the keys ``expire``.
    """
    async with client.pipeline(transaction=transaction) as pipe:
        queues = push_commands(pipe, keys, pool, batch)
        if ttl_ms:
            for key in (keys.inv_state, keys.inv_items, keys.inv_queue, *queues, *expire):
                pipe.pexpire(key, ttl_ms)
        await pipe.execute()


def push_commands(pipe: Any, keys: RunKeys, pool: str,
                  batch: Iterable[tuple[QueuedInvocation, bytes]]) -> list[str]:
    """Queue on Redis pipeline ``pipe`` the commands registering and pushing ``batch``
    (see :func:`enqueue_many`); returns the queues pushed to, in first-use order."""
    queues: dict[str, None] = {}
    for queued, sealed in batch:
        queue = pool_queue(pool, queued.invocation.memory_mb)
        queues[queue] = None
        if queued.invocation.prewarm:
            pipe.rpush(queue, embedded_entry(queued.run_id, sealed))
            continue
        # HSETNX: a duplicate push must not reset a running or finished invocation.
        pipe.hsetnx(keys.inv_state, queued.inv_id, b"queued")
        pipe.hset(keys.inv_items, queued.inv_id, sealed)
        pipe.hset(keys.inv_queue, queued.inv_id, queue)
        pipe.rpush(queue, reference_entry(queued.run_id, queued.epoch, queued.inv_id))
    return list(queues)


class SubdagUnavailableError(RuntimeError):
    """The worker logic chose an inline subDAG that the sending worker does not hold."""


def needed_tasks(wf: Workflow, spec: RunSpec, inv: Invocation) -> set[str]:
    """Tasks ``inv``'s worker may run or delegate: the subDAG(s) below what it runs."""
    roots = inv.roots if inv.worker is None else spec.worker_tasks[inv.worker]
    ids: set[str] = set()
    for root in roots:
        if root not in ids:
            ids.add(root)
            ids.update(nx.descendants(wf.graph, root))
    return ids


class InlineCache:
    """What encoding the inline subDAGs of one sender's invocations reuses, for one run.

    Each task function's code is pickled once (:class:`~faasplan.workflow.codec.CodeCache`)
    and each held workflow's topological positions are computed once, instead of once
    per subDAG. The blobs are those :func:`inline_blob` makes without a cache. Keep one
    per run (a function's code is taken when first encoded), owned by its sender.

    Parameters
    ----------
    pickler : callable, optional
        Passed to :class:`~faasplan.workflow.codec.CodeCache`.
    """

    def __init__(self, pickler: Callable[[Callable[..., Any]], bytes] | None = None) -> None:
        self.code = CodeCache(pickler)
        self._positions: dict[int, tuple[Workflow, dict[str, int]]] = {}

    def order_index(self, wf: Workflow) -> Mapping[str, int]:
        """Position of each task of ``wf`` in its topological order."""
        held = self._positions.get(id(wf))
        if held is None:
            held = self._positions[id(wf)] = (
                wf, {t: i for i, t in enumerate(wf.topological_order)})
        return held[1]


def inline_blob(workflows: list[Workflow], spec: RunSpec, inv: Invocation,
                cache: InlineCache | None = None) -> bytes:
    """Encode the subDAG ``inv`` carries inline, from the workflow(s) this worker holds.

    It holds every task the invoked worker may run or delegate
    (:func:`needed_tasks`); inputs from outside become placeholders. ``cache``: reuse
    the code pickled for this run's earlier subDAGs (the bytes are the same).

    Raises
    ------
    SubdagUnavailableError
        No held workflow contains all of them. The worker logic promises this never
        happens (it inlines only what every possible sender holds, ``RunSpec.inline``); a
        receiver never makes up for it by fetching more of the DAG.
    """
    roots = inv.roots if inv.worker is None else spec.worker_tasks[inv.worker]
    code = cache.code if cache is not None else None
    for wf in workflows:
        if not all(r in wf.tasks and wf.tasks[r].func.name != EXTERNAL_FUNCTION
                   for r in roots):
            continue
        if inv.worker is None:
            order = cache.order_index(wf) if cache is not None else None
            return encode_subdag(wf, roots[0], order_index=order, code_cache=code).blob
        ids = needed_tasks(wf, spec, inv)
        if any(wf.tasks[t].func.name == EXTERNAL_FUNCTION for t in ids):
            continue
        return encode(restrict(wf, ids) if len(ids) < len(wf) else wf, code_cache=code).blob
    raise SubdagUnavailableError(
        f"invocation of {inv.worker or 'a flexible worker'} rooted at {inv.roots[0]!r} should "
        "carry its subDAG inline, but the sending worker does not hold it")


def restrict(wf: Workflow, ids: set[str]) -> Workflow:
    """The workflow of tasks ``ids`` of ``wf``; inputs from outside become placeholders.

    Placeholders are tasks of function ``faasplan.external`` named by the producer's id;
    they are never executed: the driver fetches those outputs.
    """
    new: dict[str, TaskNode] = {}
    external: dict[str, TaskNode] = {}

    def convert(node: TaskNode) -> TaskNode:
        uid = node.task_id if isinstance(node, ExternalRef) else wf.id_of(node)
        assert uid is not None
        if uid in new:
            return new[uid]
        if uid not in external:
            external[uid] = ExternalRef(uid)
        return external[uid]

    for tid in wf.topological_order:
        if tid in ids:
            node = wf.tasks[tid]
            args, kwargs = map_leaves((node.args, node.kwargs), convert, TaskNode)
            new[tid] = TaskNode(node.func, args, kwargs, tid, node.profile)
    sinks = [new[t] for t in new if not any(d in new for d in wf.downstream(t))]
    return Workflow(sinks, name=wf.name, requirements=wf.requirements, detect=False)




class HeldParts:
    """The DAG parts one worker process fetched for one run, decoded; kept while warm.

    A part is checked against its content address when added, so bytes stored under
    the wrong key are refused even if their seal is valid.
    """

    def __init__(self) -> None:
        self._functions: dict[str, TaskFunction] = {}
        self._records: dict[str, TaskPart] = {}
        # Task code loaded from inline subDAGs, by its pickled bytes (decode's cache).
        self.loaded_code: dict[bytes, Any] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._functions or key in self._records

    def __len__(self) -> int:
        return len(self._functions) + len(self._records)

    def add(self, key: str, data: bytes) -> None:
        """Decode and keep part ``key`` (``WorkflowError`` if ``data`` is not it)."""
        if key.startswith(FUNCTION_PART_PREFIX):
            self._functions[key] = load_function_part(key, data)
        else:
            self._records[key] = load_task_part(key, data)

    def node(self, spec: RunSpec, task: str) -> TaskNode | None:
        """Task ``task``'s node when both its parts are held, else ``None``."""
        parts = spec.dag_parts.get(task)
        if not parts:
            return None
        (record_key, _), (function_key, _) = parts
        record = self._records.get(record_key)
        function = self._functions.get(function_key)
        if record is None or function is None:
            return None
        return record.node(task, function)
