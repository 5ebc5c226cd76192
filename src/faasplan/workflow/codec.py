"""Workflows and sub-workflows as bytes: what an invocation carries and storage keeps.

A blob holds the DAG: the workflow name, requirements and external inputs, a table with
each task function's code pickled once, and per task its id, function index, arguments
(upstream nodes replaced by their ids) and profile. Literal arguments whose pickle is
larger than a threshold travel apart, as content-addressed payloads, so a small blob can
ride inside an invocation while a worker fetches each large literal once.

A large DAG is also stored as content-addressed *parts* (:func:`encode_parts`): one per
function-table entry (its code) and one per task (its record, naming its function's part),
each keyed by the hash of its bytes. A worker fetches the parts of the tasks it runs, not
the whole DAG, and keeps them while warm.

Blobs carry code and are unpickled: decode only blobs your own deployment wrote. The
checksum in the header catches truncation and corruption, not malice.

>>> from faasplan import task, Workflow
>>> @task
... def inc(x):
...     return x + 1
>>> wf = Workflow(inc(inc(1)))
>>> back = decode(encode(wf).blob)
>>> back.topological_order == wf.topological_order
True
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import cloudpickle

from faasplan.workflow.errors import WorkflowError
from faasplan.workflow.graph import Workflow
from faasplan.workflow.io import IOHint
from faasplan.workflow.nested import iter_leaves, map_leaves
from faasplan.workflow.task import SizedBlob, TaskFunction, TaskNode, TaskProfile

DEFAULT_LITERAL_THRESHOLD = 65536
"""Literals whose pickle is larger than this many bytes move out of the blob."""

_MAGIC = b"FPWF"
_VERSION = 1
_DIGEST_SIZE = 8
_HEADER_SIZE = len(_MAGIC) + 1 + _DIGEST_SIZE
_RECORD_KEYS = frozenset({"name", "requirements", "external", "functions", "tasks"})
_EXTERNAL_FUNCTION_NAME = "faasplan.external"


# -- markers ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LiteralRef:
    """A literal argument kept outside the blob: payload ``id``, ``nbytes`` long.

    Decoding without payloads leaves these in the task arguments; the runtime fetches
    each id once per worker and loads it with :func:`load_literal`.
    """

    id: str
    nbytes: int


class ExternalRef(TaskNode):
    """Stand-in for an upstream task outside a decoded sub-workflow.

    It is a task node without arguments, so the decoded sub-workflow lists it among a
    task's upstream ids exactly as the original did; the runtime replaces it by the
    output it fetches for ``task_id``. Its function cannot run.
    """

    __slots__ = ()

    def __init__(self, task_id: str) -> None:
        super().__init__(_EXTERNAL_FUNCTION, (), {}, task_id)

    def __repr__(self) -> str:
        return f"ExternalRef({self.task_id!r})"


def _computed_elsewhere(*args: Any, **kwargs: Any) -> NoReturn:
    raise RuntimeError("an ExternalRef's task runs outside this sub-workflow; "
                       "fetch its output by task id instead of calling it")


# One shared, immutable-in-use function for every external reference (building a
# TaskFunction inspects a signature, which dominated decoding small sub-workflows).
_EXTERNAL_FUNCTION = TaskFunction(_computed_elsewhere, name=_EXTERNAL_FUNCTION_NAME)


class _Ref:
    """An upstream task inside a blob: only its id travels."""

    __slots__ = ("task_id",)

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id

    def __reduce__(self) -> tuple[type[_Ref], tuple[str]]:
        return (_Ref, (self.task_id,))


class _LeafMeta(type):
    def __instancecheck__(cls, value: Any) -> bool:
        # Mirrors the containers map_leaves/iter_leaves descend into.
        return not isinstance(value, list | tuple | dict)


class _Leaf(metaclass=_LeafMeta):
    """Matches, for map_leaves/iter_leaves, every value they do not descend into."""


class MissingPayloadError(WorkflowError):
    """A blob references a literal payload that was not supplied to :func:`decode`."""

    def __init__(self, literal: LiteralRef, task_id: str) -> None:
        self.literal = literal
        self.task_id = task_id
        super().__init__(
            f"literal {literal.id!r} ({literal.nbytes} bytes) used by task {task_id!r} is "
            "missing from the payloads given to decode(); pass the EncodedWorkflow's "
            "payloads, or payloads=None to keep LiteralRef markers and fetch them later")


# -- encoding -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedWorkflow:
    """A workflow as bytes: the DAG ``blob`` and the large literals moved out of it.

    ``payloads`` maps a content-addressed literal id (``lit-<sha256 prefix>``) to the
    literal's pickle; identical literals share one entry.
    """

    blob: bytes
    payloads: dict[str, bytes]

    @property
    def nbytes(self) -> int:
        """Size of the blob: what travels in an invocation."""
        return len(self.blob)

    @property
    def payload_bytes(self) -> int:
        """Total size of the payloads."""
        return sum(len(p) for p in self.payloads.values())


class _LiteralStore:
    """Decides which literals are large, pickling each distinct object at most once."""

    def __init__(self, threshold: int) -> None:
        if threshold < 0:
            raise ValueError(f"literal_threshold must be >= 0 bytes, got {threshold}")
        self.threshold = threshold
        self.payloads: dict[str, bytes] = {}
        self._seen: dict[int, LiteralRef | None] = {}

    def ref_of(self, value: Any) -> LiteralRef | None:
        """The marker standing for ``value`` if it is a large literal, else ``None``."""
        if isinstance(value, TaskNode):
            return None
        if isinstance(value, LiteralRef):
            return value
        if isinstance(value, SizedBlob):
            # Stands for an input file: its declared size counts, not its tiny pickle.
            digest = hashlib.sha256(f"{value.name}\0{value.nbytes}".encode()).hexdigest()
            return LiteralRef(f"lit-{digest[:16]}", value.nbytes)
        if id(value) not in self._seen:
            self._seen[id(value)] = self._measure(value)
        return self._seen[id(value)]

    def _measure(self, value: Any) -> LiteralRef | None:
        if _surely_small(value, self.threshold):
            return None
        try:
            data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise WorkflowError(f"cannot pickle argument of type {type(value).__name__}: "
                                f"{exc}; task arguments must be picklable") from exc
        if len(data) <= self.threshold:
            return None
        ref = LiteralRef(f"lit-{hashlib.sha256(data).hexdigest()[:16]}", len(data))
        self.payloads[ref.id] = data
        return ref

    def replace(self, value: Any) -> Any:
        """``value`` as it goes into a blob: a large plain literal becomes its marker."""
        if isinstance(value, SizedBlob):
            return value
        ref = self.ref_of(value)
        return value if ref is None else ref


def _surely_small(value: Any, threshold: int) -> bool:
    # Skipping the pickle for scalars keeps encoding of 10k-task traces quick.
    if value is None or isinstance(value, bool | float | complex):
        return True
    if isinstance(value, int):
        return value.bit_length() // 8 + 16 <= threshold
    if isinstance(value, str | bytes):
        return 4 * len(value) + 16 <= threshold
    return False


_SCALARS = frozenset({int, float, bool, str, type(None)})


def _small_scalar(value: Any, threshold: int) -> bool:
    # A scalar that _LiteralStore keeps in place (exact built-in types only).
    kind = type(value)
    return kind is float or kind is bool or value is None or (
        kind in _SCALARS and _surely_small(value, threshold))


def pickle_function(fn: Callable[..., Any]) -> bytes:
    """The pickled code of a task function, as blobs and parts store it."""
    return cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)


class CodeCache:
    """Pickled task-function code kept across the :func:`encode` calls of one run.

    Encoding many sub-workflows of one workflow (the subDAGs invocations carry inline)
    pickles each function once per cache instead of once per sub-workflow. The bytes are
    those :func:`encode` makes without a cache. Entries are keyed by the function
    object, which the cache keeps alive, so a key is never reused by another function.
    The code is pickled when first asked for: a function changed afterwards (a closure
    over mutable state) keeps the code of that moment, so a cache belongs to one run.

    Parameters
    ----------
    pickler : callable, optional
        Turns a function into its code bytes (default :func:`pickle_function`); it must
        give what :func:`pickle_function` gives, or blobs differ from uncached ones.

    >>> from faasplan import task, Workflow
    >>> @task
    ... def inc(x):
    ...     return x + 1
    >>> wf = Workflow(inc(inc(1)))
    >>> cache = CodeCache()
    >>> encode(wf, code_cache=cache).blob == encode(wf).blob, len(cache)
    (True, 1)
    """

    def __init__(self, pickler: Callable[[Callable[..., Any]], bytes] | None = None) -> None:
        self._pickler = pickler or pickle_function
        self._code: dict[int, tuple[Callable[..., Any], bytes]] = {}

    def __len__(self) -> int:
        return len(self._code)

    def code(self, func: TaskFunction, task_id: str) -> bytes:
        """The pickled code of ``func`` (pickled now unless cached); ``WorkflowError``
        naming ``task_id`` if it cannot be pickled (nothing is cached then)."""
        hit = self._code.get(id(func.fn))
        if hit is not None:
            return hit[1]
        code = _pickle_code(func, task_id, self._pickler)
        self._code[id(func.fn)] = (func.fn, code)
        return code


class _FunctionTable:
    """Task functions by content: code pickled once per distinct (name, code, io hint)."""

    def __init__(self, cache: CodeCache | None = None) -> None:
        self.entries: list[tuple[str, bytes, IOHint | None]] = []
        self._code: dict[int, bytes] = {}
        self._index: dict[tuple[str, bytes, IOHint | None], int] = {}
        self._cache = cache

    def add(self, func: TaskFunction, task_id: str) -> int:
        """Index of ``func`` in the table."""
        code = self._code.get(id(func.fn))
        if code is None:
            code = self._code[id(func.fn)] = (
                _pickle_code(func, task_id) if self._cache is None
                else self._cache.code(func, task_id))
        # Two closures may share a qualified name but not code: keep both.
        key = (func.name, code, func.io)
        if key not in self._index:
            self._index[key] = len(self.entries)
            self.entries.append(key)
        return self._index[key]


def _pickle_code(func: TaskFunction, task_id: str,
                 pickler: Callable[[Callable[..., Any]], bytes] = pickle_function) -> bytes:
    try:
        return pickler(func.fn)
    except Exception as exc:
        raise WorkflowError(f"task {task_id!r}: cannot pickle the code of {func.name}: "
                            f"{exc}") from exc


def encode(wf: Workflow, *, literal_threshold: int = DEFAULT_LITERAL_THRESHOLD,
           dedupe_code: bool = True, code_cache: CodeCache | None = None) -> EncodedWorkflow:
    """Encode a workflow (or sub-workflow) into a blob plus large-literal payloads.

    Parameters
    ----------
    wf : Workflow
        The workflow; for a sub-workflow, its ``external_inputs`` are recorded and the
        arguments coming from them travel as ids.
    literal_threshold : int
        A non-node argument leaf (anything that is not a list, tuple or dict) whose pickle
        is larger than this moves to ``payloads``. :class:`SizedBlob` leaves stay inline.
    dedupe_code : bool
        Store each function's code once (default). ``False`` pickles it into every task,
        as earlier systems did; only useful to measure the difference.
    code_cache : CodeCache, optional
        Take each function's code from this cache (pickling it there on first use), to
        encode many sub-workflows of one workflow quickly; the blob is the same.

    Returns
    -------
    EncodedWorkflow
    """
    return _encode_tasks(wf, wf.name, wf.requirements, wf.external_inputs,
                         wf.topological_order, literal_threshold=literal_threshold,
                         dedupe_code=dedupe_code, code_cache=code_cache)


def encode_subdag(wf: Workflow, root_id: str, *, order_index: Mapping[str, int] | None = None,
                  literal_threshold: int = DEFAULT_LITERAL_THRESHOLD,
                  code_cache: CodeCache | None = None) -> EncodedWorkflow:
    """``encode(wf.subdag(root_id))``, byte for byte, without building the sub-workflow.

    Parameters
    ----------
    wf : Workflow
        The workflow holding the subDAG.
    root_id : str
        Its root: the subDAG is this task and all its descendants.
    order_index : mapping of str to int, optional
        Position of each task of ``wf`` in ``wf.topological_order``. Given, the subDAG's
        tasks are sorted by it instead of scanning the whole order: pass one mapping for
        every subDAG of ``wf`` (the scan makes encoding every leaf's subDAG quadratic).
    literal_threshold, code_cache
        As for :func:`encode`.

    Raises
    ------
    KeyError
        ``root_id`` is not a task of ``wf``; else what :func:`encode` raises.
    """
    wf.node(root_id)
    keep = {root_id}
    stack = [root_id]
    while stack:
        for child in wf.downstream(stack.pop()):
            if child not in keep:
                keep.add(child)
                stack.append(child)
    order: Sequence[str] = (
        sorted(keep, key=order_index.__getitem__) if order_index is not None
        else [t for t in wf.topological_order if t in keep])
    external = frozenset(p for t in keep for p in wf.upstream(t) if p not in keep)
    return _encode_tasks(wf, f"{wf.name}/{root_id}", wf.requirements, external, order,
                         literal_threshold=literal_threshold, dedupe_code=True,
                         code_cache=code_cache)


def _encode_tasks(wf: Workflow, name: str, requirements: Sequence[str],
                  external: frozenset[str], order: Sequence[str], *, literal_threshold: int,
                  dedupe_code: bool, code_cache: CodeCache | None,
                  prepared: _Arguments | None = None) -> EncodedWorkflow:
    # The tasks ``order`` (topological) of ``wf``, as the workflow ``name`` with these
    # requirements and external inputs: what encode() writes for such a (sub-)workflow.
    # ``prepared``: the arguments of those tasks, encoded already (_Arguments.of).
    if prepared is None:
        prepared = _Arguments.of(wf, order, literal_threshold)
    literals = prepared.literals
    functions = _FunctionTable(code_cache)
    tasks = []
    for tid in order:
        node = wf.tasks[tid]
        index = functions.add(node.func, tid)
        # A fresh pickle per task: one shared bytes object would be memoized by pickle.
        code = None if dedupe_code else _pickle_code(node.func, tid)
        args, kwargs = prepared.by_task[tid]
        tasks.append((tid, index, code, args, kwargs, node.profile))
    record = {
        "name": name,
        "requirements": tuple(requirements),
        "external": tuple(sorted(external)),
        "functions": [(fname, fcode if dedupe_code else None, hint)
                      for fname, fcode, hint in functions.entries],
        "tasks": tasks,
    }
    # A record of plain values and faasplan's own markers pickles to the same bytes with
    # the C pickler as with cloudpickle, which only differs on what it pickles by value
    # (functions, classes, objects of ``__main__``): about 2x faster on large workflows.
    plain = prepared.plain and _plain_header(name, requirements, external) and all(
        type(t[0]) is str and _plain_profile(t[5]) for t in tasks) and all(
        type(fname) is str and type(fcode) is bytes and _plain_hint(hint)
        for fname, fcode, hint in functions.entries)
    body = (pickle if plain else cloudpickle).dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    header = _MAGIC + bytes([_VERSION]) + _digest(body)
    return EncodedWorkflow(header + body, literals.payloads)


@dataclass(frozen=True)
class _Arguments:
    """Every task's arguments as they go into a blob or a part (upstream tasks as refs,
    large literals as markers), and the literals store that decided which are large."""

    by_task: dict[str, tuple[Any, Any]]
    literals: _LiteralStore
    # Every task's arguments are upstream refs and small built-in scalars only.
    plain: bool = False

    @classmethod
    def of(cls, wf: Workflow, order: Sequence[str], literal_threshold: int) -> _Arguments:
        literals = _LiteralStore(literal_threshold)
        by_task: dict[str, tuple[Any, Any]] = {}
        tasks = wf.tasks
        plain = True
        for tid in order:
            node = tasks[tid]
            encoded = _plain_arguments(node, wf, literal_threshold)
            if encoded is None:
                plain = False
                try:
                    encoded = _encode_arguments(node, wf, literals)
                except WorkflowError as exc:
                    raise WorkflowError(f"task {tid!r}: {exc}") from exc
            by_task[tid] = encoded
        return cls(by_task, literals, plain)


def encode_with_parts(wf: Workflow, *, literal_threshold: int = DEFAULT_LITERAL_THRESHOLD
                      ) -> tuple[EncodedWorkflow, DagParts]:
    """``(encode(wf), encode_parts(wf))`` with the same threshold, byte for byte, walking
    the tasks' arguments once for both."""
    prepared = _Arguments.of(wf, wf.topological_order, literal_threshold)
    encoded = _encode_tasks(wf, wf.name, wf.requirements, wf.external_inputs,
                            wf.topological_order, literal_threshold=literal_threshold,
                            dedupe_code=True, code_cache=None, prepared=prepared)
    return encoded, _encode_parts(wf, prepared)


def _plain_arguments(node: TaskNode, wf: Workflow, threshold: int
                     ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    # The common case (upstream tasks and small built-in scalars), as _encode_arguments
    # would write it: nodes become refs, small scalars stay as they are. None otherwise.
    args, kwargs = node.args, node.kwargs
    if type(args) is not tuple or type(kwargs) is not dict:
        return None
    out: list[Any] = []
    for a in args:
        if type(a) is TaskNode:
            out.append(_Ref(wf.id_of(a)))
        elif _small_scalar(a, threshold):
            out.append(a)
        else:
            return None
    for k, v in kwargs.items():
        if type(k) is not str or not _small_scalar(v, threshold):
            return None
    return tuple(out), dict(kwargs)


def _plain_header(name: Any, requirements: Sequence[Any], external: frozenset[Any]) -> bool:
    return type(name) is str and all(type(r) is str for r in requirements) and all(
        type(e) is str for e in external)


def _plain_profile(profile: Any) -> bool:
    return profile is None or (type(profile) is TaskProfile
                               and type(profile.exec_ms) in _SCALARS
                               and type(profile.output_bytes) in _SCALARS)


def _plain_hint(hint: Any) -> bool:
    return hint is None or (type(hint) is IOHint and all(
        type(getattr(hint, f)) in _SCALARS for f in IOHint.__slots__))


def _encode_arguments(node: TaskNode, wf: Workflow, literals: _LiteralStore) -> Any:
    # Any arguments (_Arguments.of tries _plain_arguments first).
    def convert(leaf: Any) -> Any:
        if isinstance(leaf, TaskNode):
            return _Ref(wf.id_of(leaf))
        return literals.replace(leaf)

    return map_leaves((node.args, node.kwargs), convert, _Leaf)


def encoded_size(wf: Workflow, *, literal_threshold: int = DEFAULT_LITERAL_THRESHOLD,
                 dedupe_code: bool = True) -> int:
    """Size in bytes of the blob :func:`encode` makes for ``wf`` (payloads excluded)."""
    return encode(wf, literal_threshold=literal_threshold, dedupe_code=dedupe_code).nbytes


def literal_refs(wf: Workflow, literal_threshold: int = DEFAULT_LITERAL_THRESHOLD
                 ) -> dict[str, tuple[LiteralRef, ...]]:
    """Per task id (every task), the large literals it needs, in argument order.

    Ids and sizes match the payloads :func:`encode` produces with the same threshold;
    :class:`SizedBlob` leaves always count, with their declared ``nbytes``, since they
    stand for input files. A worker fetches each id once.
    """
    literals = _LiteralStore(literal_threshold)
    out: dict[str, tuple[LiteralRef, ...]] = {}
    for tid in wf.topological_order:
        node = wf.tasks[tid]
        refs: dict[str, LiteralRef] = {}
        for leaf in iter_leaves((node.args, node.kwargs), _Leaf):
            ref = literals.ref_of(leaf)
            if ref is not None:
                refs.setdefault(ref.id, ref)
        out[tid] = tuple(refs.values())
    return out


# -- decoding -----------------------------------------------------------------------------
def decode(blob: bytes, payloads: Mapping[str, bytes] | None = None, *,
           loaded_code: dict[bytes, Any] | None = None) -> Workflow:
    """Rebuild the workflow :func:`encode` wrote into ``blob``.

    Ids, topological order, structure hash, requirements and external inputs are those
    of the encoded workflow; arguments from external inputs are :class:`ExternalRef`
    nodes.

    Parameters
    ----------
    blob : bytes
        ``EncodedWorkflow.blob``.
    payloads : mapping of str to bytes, optional
        The large literals by id. ``None`` leaves :class:`LiteralRef` markers in the
        arguments, for a worker to fetch lazily.
    loaded_code : dict, optional
        Functions already loaded, by their pickled code; code found there is not
        unpickled again, and code loaded here is added (a worker decoding many blobs of
        one run loads each function once).

    Raises
    ------
    WorkflowError
        (a ``ValueError``) if the blob is not a workflow blob, is corrupt, or its code
        cannot be loaded here; :class:`MissingPayloadError` if ``payloads`` lacks a
        literal a task uses.
    """
    record = _read_record(blob)
    name, requirements, external = record["name"], record["requirements"], record["external"]
    functions: dict[int, TaskFunction] = {}
    loaded: dict[str, Any] = {}
    nodes: dict[str, TaskNode] = {}
    refs = {e: ExternalRef(e) for e in external}
    for entry in record["tasks"]:
        try:
            tid, index, code, args, kwargs, profile = entry
        except (TypeError, ValueError):
            _malformed(f"a task entry is {type(entry).__name__} {entry!r:.80}")
        if index not in functions:
            functions[index] = _load_function(record["functions"], index, code, tid,
                                              loaded_code)

        def resolve(marker: _Ref | LiteralRef, tid: str = tid) -> Any:
            if isinstance(marker, LiteralRef):
                return marker if payloads is None else _payload(marker, payloads, loaded, tid)
            found = nodes.get(marker.task_id) or refs.get(marker.task_id)
            if found is None:
                _malformed(f"task {tid!r} uses unknown upstream task {marker.task_id!r}")
            return found

        if (type(args) is tuple and type(kwargs) is dict
                and all(type(a) is _Ref or type(a) in _SCALARS for a in args)
                and all(type(v) in _SCALARS for v in kwargs.values())):
            # Upstream tasks and scalars only: what map_leaves below would give.
            args = tuple(resolve(a) if type(a) is _Ref else a for a in args)
            kwargs = dict(kwargs)
        else:
            args, kwargs = map_leaves((args, kwargs), resolve, (_Ref, LiteralRef))
        nodes[tid] = TaskNode(functions[index], args, kwargs, tid, profile)
    ids = {id(n): tid for tid, n in (*nodes.items(), *refs.items())}
    return _rebuild(list(nodes.values()), ids, frozenset(external), name, tuple(requirements))


def _read_record(blob: bytes) -> dict[str, Any]:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise WorkflowError(f"decode() takes the blob bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < _HEADER_SIZE or not blob.startswith(_MAGIC):
        raise WorkflowError(f"not a faasplan workflow blob ({len(blob)} bytes, starts with "
                            f"{blob[:8]!r}); expected the bytes of EncodedWorkflow.blob")
    if blob[len(_MAGIC)] != _VERSION:
        raise WorkflowError(f"workflow blob has format version {blob[len(_MAGIC)]}, this "
                            f"faasplan reads version {_VERSION}; encode it again")
    body = blob[_HEADER_SIZE:]
    if _digest(body) != blob[len(_MAGIC) + 1:_HEADER_SIZE]:
        raise WorkflowError(f"workflow blob is corrupt or truncated ({len(blob)} bytes): "
                            "its checksum does not match; fetch or encode it again")
    try:
        record = pickle.loads(body)
    except Exception as exc:
        _malformed(f"cannot unpickle it ({type(exc).__name__}: {exc})")
    if not isinstance(record, dict) or set(record) != _RECORD_KEYS:
        _malformed(f"unexpected content {type(record).__name__}")
    return record


def _load_function(table: list[tuple[str, bytes | None, IOHint | None]], index: int,
                   task_code: bytes | None, tid: str,
                   loaded: dict[bytes, Any] | None = None) -> TaskFunction:
    try:
        name, code, hint = table[index]
    except (TypeError, ValueError, IndexError):
        _malformed(f"task {tid!r} uses function #{index!r}, not in the function table")
    code = code if code is not None else task_code
    if code is None:
        _malformed(f"no code stored for function {name!r} of task {tid!r}")
    if loaded is not None:
        fn = loaded.get(code)
        if fn is not None:
            return TaskFunction(fn, hint, name)
    try:
        fn = pickle.loads(code)
    except Exception as exc:
        raise WorkflowError(
            f"cannot load the code of {name!r} (task {tid!r}): {type(exc).__name__}: {exc}; "
            "the module defining it must be importable where the workflow is decoded"
        ) from exc
    if loaded is not None:
        loaded[code] = fn
    return TaskFunction(fn, hint, name)


def _payload(ref: LiteralRef, payloads: Mapping[str, bytes], loaded: dict[str, Any],
             tid: str) -> Any:
    # Identical literals decode to one shared object, as they were one payload.
    if ref.id not in loaded:
        if ref.id not in payloads:
            raise MissingPayloadError(ref, tid)
        loaded[ref.id] = load_literal(ref, payloads[ref.id])
    return loaded[ref.id]


def load_literal(ref: LiteralRef, data: bytes) -> Any:
    """The value of a large literal from its payload bytes, checked against ``ref``.

    Raises ``WorkflowError`` naming the literal if the bytes have the wrong size or
    content hash (wrong key or corrupt storage) or cannot be unpickled.
    """
    if len(data) != ref.nbytes or hashlib.sha256(data).hexdigest()[:16] != ref.id[4:]:
        raise WorkflowError(f"payload for literal {ref.id!r} does not match it ({len(data)} "
                            f"bytes, expected {ref.nbytes}, or wrong content hash); the "
                            "storage returned the wrong or corrupt bytes")
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise WorkflowError(f"cannot unpickle literal {ref.id!r}: "
                            f"{type(exc).__name__}: {exc}") from exc


def _rebuild(order: list[TaskNode], ids: dict[int, str], external: frozenset[str],
             name: str, requirements: tuple[str, ...]) -> Workflow:
    # Workflow() renumbers nodes from its sinks, re-detects requirements and has no
    # notion of external inputs; build it as Workflow.subdag does, from explicit ids.
    wf = object.__new__(Workflow)
    wf._init(order, ids, external, name=name)
    wf.requirements = requirements
    return wf


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest()


def _malformed(detail: str) -> NoReturn:
    raise WorkflowError(f"malformed workflow blob: {detail}; it was not written by this "
                        "faasplan version's encode()")


@dataclass(frozen=True)
class DagSizes:
    """What the worker logic is told about a workflow's encoded size.

    ``task_nbytes``: per task, its share of the encoded DAG (arguments and structure);
    ``code_nbytes``: per function, its pickled code. ``parts``: per task, the stored DAG
    parts (key, bytes) a worker needs to run it: its record, then its function's code
    (:func:`encode_parts`). Both drivers build their :class:`~faasplan.worker.RunSpec`
    from these, so they take the same inline-or-fetch decisions and fetch the same parts
    for the same plan.
    """

    task_nbytes: Mapping[str, int]
    code_nbytes: Mapping[str, int]
    parts: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)


def dag_sizes(wf: Workflow, encoded: EncodedWorkflow | None = None,
              parts: DagParts | None = None) -> DagSizes:
    """Measure ``wf``'s encoded sizes (encoding it unless ``encoded`` is given).

    ``parts``: its :func:`encode_parts` (computed unless given).
    Raises what :func:`encode` raises for a workflow that cannot be encoded.
    """
    if encoded is None and parts is None:
        encoded, parts = encode_with_parts(wf)
    enc = encoded if encoded is not None else encode(wf)
    split = parts if parts is not None else encode_parts(wf)
    code: dict[str, int] = {}
    for node in wf.tasks.values():
        if node.func.name not in code:
            try:
                code[node.func.name] = len(cloudpickle.dumps(node.func.fn, protocol=5))
            except Exception:
                code[node.func.name] = 0  # encode() reports code it cannot pickle
    per_task = max(0, enc.nbytes - sum(code.values())) // max(1, len(wf))
    return DagSizes(dict.fromkeys(wf.topological_order, per_task), code, split.task_parts())


# -- content-addressed parts --------------------------------------------------------------
TASK_PART_PREFIX = "dag-t-"
"""Key prefix of a task-record part."""
FUNCTION_PART_PREFIX = "dag-f-"
"""Key prefix of a function-code part."""
_PART_PROTOCOL = 4  # what protocol 5 adds (out-of-band buffers) a record never uses


@dataclass(frozen=True)
class DagParts:
    """A workflow stored as content-addressed parts.

    ``blobs`` maps each part key (``dag-f-<hash>`` for a function's code, ``dag-t-<hash>``
    for a task record: its arguments and profile; the hash is of the part's bytes) to its
    bytes. ``tasks`` maps each task id to ``(record key, function key)``: a task record
    names neither, the spec pairs them. Identical parts share one key.
    """

    blobs: Mapping[str, bytes]
    tasks: Mapping[str, tuple[str, str]]

    @property
    def nbytes(self) -> int:
        """Total size of the distinct parts (what the client stores)."""
        return sum(len(b) for b in self.blobs.values())

    def task_parts(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """Per task, ``((record key, bytes), (function key, bytes))``."""
        return {tid: tuple((key, len(self.blobs[key])) for key in keys)
                for tid, keys in self.tasks.items()}


@dataclass(frozen=True, slots=True)
class TaskPart:
    """A decoded task record: what a worker holding it (and its function) can run.

    ``args``/``kwargs`` hold :class:`ExternalRef` for upstream tasks and
    :class:`LiteralRef` for large literals.
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    profile: TaskProfile | None

    def node(self, task_id: str, function: TaskFunction) -> TaskNode:
        """The node of task ``task_id``, given its function's part."""
        return TaskNode(function, self.args, self.kwargs, task_id, self.profile)


def part_key(prefix: str, data: bytes) -> str:
    """Content address of a part: ``prefix`` and a hash of ``data``."""
    return prefix + hashlib.sha256(data).hexdigest()[:24]


def _record_id(obj: Any) -> Any:
    if isinstance(obj, _Ref):
        return ("u", obj.task_id)
    if isinstance(obj, LiteralRef):
        return ("l", obj.id, obj.nbytes)
    if type(obj) is TaskProfile:
        return ("p", obj.exec_ms, obj.output_bytes)
    return None


class _PartPickler(cloudpickle.Pickler):
    """Pickles task records compactly: upstream ids and large literals as persistent ids."""

    def persistent_id(self, obj: Any) -> Any:
        return _record_id(obj)


_PLAIN_TYPES = frozenset({tuple, list, dict, str, int, float, bool, type(None), bytes})


class _NotPlain(Exception):
    """A record holds an object :class:`_PlainPartPickler` leaves to cloudpickle."""


class _PlainPartPickler(pickle.Pickler):
    """:class:`_PartPickler` for records made only of plain built-in values and markers,
    in the same bytes (cloudpickle pickles those as ``pickle`` does), and faster. Raises
    :class:`_NotPlain` on anything else (a function, an array, a class instance), which
    cloudpickle may pickle differently (by value)."""

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) in _PLAIN_TYPES:
            return None
        found = _record_id(obj)
        if found is None:
            raise _NotPlain
        return found


def _pickle_record(tid: str, record: Any) -> bytes:
    buf = io.BytesIO()
    try:
        _PartPickler(buf, protocol=_PART_PROTOCOL).dump(record)
    except Exception as exc:
        raise WorkflowError(f"task {tid!r}: cannot pickle its arguments: {exc}") from exc
    return buf.getvalue()


class _PartUnpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "u":
            return ExternalRef(pid[1])
        if pid[0] == "l":
            return LiteralRef(pid[1], pid[2])
        if pid[0] == "p":
            return TaskProfile(pid[1], pid[2])
        _malformed(f"unknown reference {pid!r:.80} in a task part")


def encode_parts(wf: Workflow, *, literal_threshold: int = DEFAULT_LITERAL_THRESHOLD
                 ) -> DagParts:
    """Split ``wf`` into content-addressed parts (see :class:`DagParts`).

    Literals above ``literal_threshold`` stay outside as in :func:`encode` (same ids).
    Raises ``WorkflowError`` for code or arguments that cannot be pickled.
    """
    return _encode_parts(wf, _Arguments.of(wf, wf.topological_order, literal_threshold))


def _encode_parts(wf: Workflow, prepared: _Arguments) -> DagParts:
    functions = _FunctionTable()
    function_keys: dict[int, str] = {}
    blobs: dict[str, bytes] = {}
    tasks: dict[str, tuple[str, str]] = {}
    # One pickler for every record (its memo cleared between them): the same bytes as a
    # fresh pickler per record, without building one 10^5 times.
    buf = io.BytesIO()
    plain = _PlainPartPickler(buf, protocol=_PART_PROTOCOL)
    for tid in wf.topological_order:
        node = wf.tasks[tid]
        index = functions.add(node.func, tid)
        fkey = function_keys.get(index)
        if fkey is None:
            data = pickle.dumps(functions.entries[index], protocol=pickle.HIGHEST_PROTOCOL)
            fkey = function_keys[index] = part_key(FUNCTION_PART_PREFIX, data)
            blobs[fkey] = data
        args, kwargs = prepared.by_task[tid]
        record = (args, kwargs, node.profile)
        buf.seek(0)
        buf.truncate()
        plain.clear_memo()
        try:
            plain.dump(record)
            data = buf.getvalue()
        except Exception:  # _NotPlain, or anything else: cloudpickle decides
            # Left to cloudpickle, on a buffer of its own (the failed dump left bytes and
            # perhaps an open frame behind: the plain pickler gets a fresh one too).
            data = _pickle_record(tid, record)
            buf = io.BytesIO()
            plain = _PlainPartPickler(buf, protocol=_PART_PROTOCOL)
        tkey = part_key(TASK_PART_PREFIX, data)
        blobs[tkey] = data
        tasks[tid] = (tkey, fkey)
    return DagParts(blobs, tasks)


def check_part(key: str, data: bytes) -> None:
    """Raise ``WorkflowError`` unless ``data`` is the part ``key`` names (content hash)."""
    prefix = key[:len(TASK_PART_PREFIX)]
    if prefix not in (TASK_PART_PREFIX, FUNCTION_PART_PREFIX) or part_key(prefix, data) != key:
        raise WorkflowError(f"DAG part {key!r}: the {len(data)} bytes stored under it do not "
                            "hash to its key; the storage returned wrong or corrupt bytes")


def load_task_part(key: str, data: bytes) -> TaskPart:
    """Decode a task-record part (checked against ``key``)."""
    check_part(key, data)
    try:
        args, kwargs, profile = _PartUnpickler(io.BytesIO(data)).load()
    except WorkflowError:
        raise
    except Exception as exc:
        _malformed(f"task part {key!r}: cannot unpickle it ({type(exc).__name__}: {exc})")
    return TaskPart(tuple(args), dict(kwargs), profile)


def load_function_part(key: str, data: bytes) -> TaskFunction:
    """Decode a function part (checked against ``key``) into its task function."""
    check_part(key, data)
    try:
        name, code, hint = pickle.loads(data)
    except Exception as exc:
        _malformed(f"function part {key!r}: cannot unpickle it ({type(exc).__name__}: {exc})")
    return _load_function([(name, code, hint)], 0, None, f"(part {key})")
