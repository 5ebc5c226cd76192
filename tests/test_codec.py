"""Encoding workflows and sub-workflows to bytes and back."""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

import cloudpickle
import numpy as np
import pytest

from faasplan.workflow import (
    SizedBlob,
    TaskNode,
    TaskProfile,
    Workflow,
    WorkflowError,
    io,
    map_leaves,
    task,
)
from faasplan.workflow.codec import (
    EncodedWorkflow,
    ExternalRef,
    LiteralRef,
    MissingPayloadError,
    decode,
    encode,
    encoded_size,
    literal_refs,
    load_literal,
)


@task
def source(x: int) -> int:
    return x * 10


@task(io=io.linear(0.5))
def combine(nested: dict[str, Any], grid: list[list[int]], *, bias: int = 0) -> int:
    a = nested["a"]
    return a[0] + sum(a[1]) + sum(sum(row) for row in grid) + bias


@task
def total(values: Any, scale: float = 1.0) -> float:
    return float(np.sum(values)) * scale


def run(wf: Workflow) -> dict[str, Any]:
    """Execute a workflow in process, in topological order."""
    out: dict[str, Any] = {}
    for tid in wf.topological_order:
        node = wf.tasks[tid]
        args, kwargs = map_leaves((node.args, node.kwargs), lambda n: out[wf.id_of(n)], TaskNode)
        out[tid] = node.func.fn(*args, **kwargs)
    return out


def shape(wf: Workflow) -> tuple[Any, ...]:
    """Everything decode must preserve about a workflow's structure."""
    return (wf.name, wf.topological_order, wf.structure_hash, wf.requirements,
            wf.external_inputs, {t: wf.upstream(t) for t in wf},
            {t: wf.downstream(t) for t in wf})


def nested_workflow() -> Workflow:
    x, y, z = source(1), source(2), source(3, task_id="third")
    mid = combine({"a": [x, (y, z)]}, [[x, y], [z, 4]], bias=5,
                  profile=TaskProfile(exec_ms=12.5, output_bytes=800))
    return Workflow(combine({"a": [mid, (7, 8)]}, [[mid]]), requirements=["numpy>=1.20"])


def tree(leaves: int) -> Workflow:
    """A binary tree reduction whose functions are pickled by value (local closures)."""
    def leaf(i: int) -> int:
        return i * i

    def add(a: int, b: int) -> int:
        return a + b

    leaf_t, add_t = task(leaf), task(add)
    level = [leaf_t(i) for i in range(leaves)]
    while len(level) > 1:
        level = [add_t(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return Workflow(level[0], name=f"tree{leaves}")


def test_nested_arguments_round_trip() -> None:
    wf = nested_workflow()
    enc = encode(wf)
    back = decode(enc.blob, enc.payloads)
    assert shape(back) == shape(wf)
    assert "numpy>=1.20" in back.requirements
    assert run(back) == run(wf)
    mid = back.tasks["combine-0"]
    assert mid.profile == TaskProfile(exec_ms=12.5, output_bytes=800)
    assert mid.func.io == io.linear(0.5)
    assert mid.func.name == wf.tasks["combine-0"].func.name
    # Upstream nodes sit where they were, inside dicts, tuples and lists of lists.
    a = mid.args[0]["a"]
    assert [back.id_of(a[0]), back.id_of(a[1][0]), back.id_of(a[1][1])] == [
        "source-0", "source-1", "third"]
    assert isinstance(a[1], tuple)
    assert [[back.id_of(n) if isinstance(n, TaskNode) else n for n in row]
            for row in mid.args[1]] == [["source-0", "source-1"], ["third", 4]]
    assert mid.kwargs == {"bias": 5}


def test_decoded_tasks_share_one_function_object() -> None:
    back = decode(encode(nested_workflow()).blob)
    funcs = {id(back.tasks[t].func) for t in ("source-0", "source-1", "third")}
    assert len(funcs) == 1


def test_large_literal_moved_out_and_shared() -> None:
    big = np.arange(20_000, dtype=np.float64)  # 160 kB pickled
    same_content = big.copy()
    small = np.arange(10, dtype=np.float64)
    wf = Workflow([total(big, task_id="t1"), total(same_content, 2.0, task_id="t2"),
                   total(small, task_id="t3")])
    enc = encode(wf)
    assert isinstance(enc, EncodedWorkflow)
    assert len(enc.payloads) == 1
    (lit_id,) = enc.payloads
    assert lit_id.startswith("lit-") and len(lit_id) == 20
    assert enc.payload_bytes > big.nbytes
    assert enc.nbytes == len(enc.blob) < 4096

    back = decode(enc.blob, enc.payloads)
    b1, b2 = back.tasks["t1"].args[0], back.tasks["t2"].args[0]
    np.testing.assert_array_equal(b1, big)
    assert b1 is b2
    np.testing.assert_array_equal(back.tasks["t3"].args[0], small)
    assert run(back) == run(wf)

    lazy = decode(enc.blob)
    ref = lazy.tasks["t1"].args[0]
    assert ref == LiteralRef(lit_id, len(enc.payloads[lit_id]))
    assert lazy.tasks["t2"].args == (ref, 2.0)
    np.testing.assert_array_equal(load_literal(ref, enc.payloads[lit_id]), big)


def test_lazily_decoded_workflow_reencodes_without_its_payloads() -> None:
    # A worker that decoded without payloads can pass a sub-workflow on unchanged.
    big = np.arange(20_000, dtype=np.float64)
    wf = Workflow(total([total(big, task_id="inner")], task_id="outer"))
    enc = encode(wf)
    lazy = decode(enc.blob)
    again = encode(lazy.subdag("inner"))
    assert again.payloads == {}
    assert literal_refs(lazy.subdag("inner"))["inner"] == tuple(
        LiteralRef(k, len(v)) for k, v in enc.payloads.items())
    back = decode(again.blob, enc.payloads)
    np.testing.assert_array_equal(back.tasks["inner"].args[0], big)
    assert run(back) == run(wf)


def test_threshold_decides_what_moves_out() -> None:
    wf = Workflow(total(np.ones(100)))
    assert encode(wf).payloads == {}
    enc = encode(wf, literal_threshold=100)
    assert len(enc.payloads) == 1
    assert encode(wf).nbytes - enc.nbytes > 700
    assert encoded_size(wf, literal_threshold=100) == enc.nbytes
    with pytest.raises(ValueError, match="literal_threshold must be >= 0"):
        encode(wf, literal_threshold=-1)


def test_literal_refs_match_payloads_and_count_sized_blobs() -> None:
    big = np.zeros(50_000)
    files = [SizedBlob("in-a.dat", 5_000_000), SizedBlob("in-b.dat", 10)]
    a = total(big, task_id="a")
    b = total([big, big, files], task_id="b")
    wf = Workflow(combine({"a": [a, (b, 1)]}, [], task_id="c"))
    refs = literal_refs(wf)
    enc = encode(wf)
    assert set(refs) == {"a", "b", "c"}
    assert refs["c"] == ()
    assert refs["a"] == tuple(LiteralRef(k, len(v)) for k, v in enc.payloads.items())
    # The same literal twice in one task is needed once; sized blobs count at face value.
    assert refs["b"][0] == refs["a"][0]
    assert [r.nbytes for r in refs["b"][1:]] == [5_000_000, 10]
    assert len({r.id for r in refs["b"]}) == 3
    # Sized blobs are tiny stand-ins: they stay in the blob, never become payloads.
    assert decode(enc.blob, enc.payloads).tasks["b"].args[0][2] == files


def test_subdag_round_trip_keeps_external_inputs() -> None:
    wf = nested_workflow()
    sub = wf.subdag("combine-0")
    assert sub.external_inputs == {"source-0", "source-1", "third"}
    enc = encode(sub)
    back = decode(enc.blob, enc.payloads)
    assert shape(back) == shape(sub)
    assert back.topological_order == ("combine-0", "combine-1")
    first = back.tasks["combine-0"].args[0]["a"]
    assert isinstance(first[0], ExternalRef) and first[0].task_id == "source-0"
    assert back.upstream("combine-0") == ("source-0", "source-1", "third")
    # A decoded sub-workflow encodes again to the same structure.
    again = decode(encode(back).blob)
    assert shape(again) == shape(sub)
    # The sub-workflow's blob leaves out the tasks it does not run.
    assert enc.nbytes < encode(wf).nbytes
    with pytest.raises(RuntimeError, match="fetch its output by task id"):
        first[0].func.fn()


def test_code_stored_once_per_function() -> None:
    wf = tree(64)
    add_fn = wf.tasks["add-0"].func.fn
    code = cloudpickle.dumps(add_fn, protocol=5)
    assert len(code) > 200  # pickled by value: worth deduplicating
    deduped = encode(wf)
    per_task = encode(wf, dedupe_code=False)
    assert deduped.blob.count(code) == 1
    assert per_task.blob.count(code) == 63
    assert per_task.nbytes - deduped.nbytes >= 62 * len(code)
    # With the code stored once, each extra task costs far less than its code.
    small = encode(tree(8))
    per_extra_task = (deduped.nbytes - small.nbytes) / (127 - 15)
    assert per_extra_task < len(code) / 4
    assert shape(decode(per_task.blob)) == shape(wf)
    assert run(decode(per_task.blob)) == run(wf)


def test_same_name_different_closures_keep_their_code() -> None:
    def make(k: int) -> Any:
        @task
        def shift(x: int) -> int:
            return x + k
        return shift

    wf = Workflow(make(100)(make(1)(5)))
    back = decode(encode(wf).blob)
    assert run(back)["shift-1"] == 106


def test_missing_payload_names_literal_and_task() -> None:
    enc = encode(Workflow(total(np.zeros(20_000), task_id="sum-big")))
    (lit_id,) = enc.payloads
    with pytest.raises(MissingPayloadError, match=f"literal '{lit_id}'.*task 'sum-big'"):
        decode(enc.blob, {})
    with pytest.raises(ValueError, match="payloads=None"):
        decode(enc.blob, {"lit-0000000000000000": b""})


def test_wrong_payload_bytes_are_rejected() -> None:
    enc = encode(Workflow(total(np.zeros(20_000))))
    (lit_id,) = enc.payloads
    other = encode(Workflow(total(np.ones(20_000)))).payloads
    with pytest.raises(WorkflowError, match=f"payload for literal '{lit_id}' does not match"):
        decode(enc.blob, {lit_id: next(iter(other.values()))})


def test_corrupt_blobs_raise_clear_errors() -> None:
    blob = encode(nested_workflow()).blob
    tampered = bytearray(blob)
    tampered[len(blob) // 2] ^= 0xFF
    with pytest.raises(ValueError, match="corrupt or truncated"):
        decode(bytes(tampered))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        decode(blob[:-10])
    with pytest.raises(ValueError, match="not a faasplan workflow blob"):
        decode(b"\x80\x05garbage that is not a workflow")
    with pytest.raises(ValueError, match="not a faasplan workflow blob"):
        decode(b"")
    with pytest.raises(ValueError, match="format version 9"):
        decode(blob[:4] + b"\x09" + blob[5:])
    with pytest.raises(ValueError, match="takes the blob bytes, got str"):
        decode("FPWF")  # type: ignore[arg-type]


def test_unpicklable_argument_names_the_task() -> None:
    wf = Workflow(total(threading.Lock(), task_id="locked"))
    with pytest.raises(WorkflowError, match="task 'locked': cannot pickle argument of type lock"):
        encode(wf)


def test_code_that_cannot_be_imported_names_function_and_task(tmp_path: Any) -> None:
    # The decorated function travels by value, but the plain helper it calls is pickled
    # by reference to its module, which the decoding side cannot import.
    (tmp_path / "codec_tmp_mod.py").write_text(
        "from faasplan import task\n\n\ndef helper(x):\n    return x\n\n\n"
        "@task\ndef ghost(x):\n    return helper(x)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("codec_tmp_mod")
        blob = encode(Workflow(mod.ghost(1))).blob
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("codec_tmp_mod", None)
        importlib.invalidate_caches()
    with pytest.raises(WorkflowError,
                       match=r"cannot load the code of 'codec_tmp_mod.ghost' \(task 'ghost-0'\)"
                             ".*must be importable"):
        decode(blob)


# -- one walk of the arguments for the blob and the parts -----------------------------------
def test_encode_with_parts_is_encode_and_encode_parts_byte_for_byte() -> None:
    from faasplan.workflow.codec import encode_parts, encode_with_parts
    from faasplan.workloads import REGISTRY

    big = np.arange(40_000)  # a large literal: one payload, shared by two tasks
    tasks = [combine({"a": (source(i), [source(i + 1)])}, [[i, i]], bias=i) for i in range(4)]
    mixed = Workflow([*tasks, combine({"a": (big, [1])}, [[0]]),
                      combine({"a": (big, [2])}, [[1]])], name="mixed")
    for wf in (mixed, *(REGISTRY[n]() for n in ("tree_reduction", "gemm", "wordcount"))):
        encoded, parts = encode_with_parts(wf, literal_threshold=1024)
        alone = encode(wf, literal_threshold=1024)
        assert encoded.blob == alone.blob and encoded.payloads == alone.payloads
        assert parts == encode_parts(wf, literal_threshold=1024)
    assert len(encode_with_parts(mixed, literal_threshold=1024)[0].payloads) == 1


def test_arguments_that_cannot_be_pickled_name_their_task_in_both() -> None:
    from faasplan.workflow.codec import encode_parts, encode_with_parts

    lock = threading.Lock()
    wf = Workflow(combine({"a": (lock, [1])}, [[0]], task_id="locked"), name="locked")
    for make in (encode_with_parts, encode_parts, encode):
        with pytest.raises(WorkflowError, match="task 'locked'"):
            make(wf, literal_threshold=0)


@task
def apply_to(fn: Any, *xs: Any) -> Any:
    return fn(*xs)


def test_task_records_with_code_or_arrays_in_their_arguments_still_travel() -> None:
    from faasplan.workflow.codec import encode_parts, load_task_part

    def local_scale(v: float) -> float:  # a local function: only cloudpickle takes it
        return v * 3

    wf = Workflow([apply_to(local_scale, source(1), task_id="local"),
                   apply_to(lambda a, b: a + b, source(2), np.float64(0.5), task_id="lam"),
                   apply_to(abs, source(3), task_id="plain")], name="code-args")
    parts = encode_parts(wf)
    decoded = {}
    for tid, (record_key, _) in parts.tasks.items():
        decoded[tid] = load_task_part(record_key, parts.blobs[record_key])
    assert decoded["local"].args[0](2.0) == 6.0
    assert decoded["lam"].args[0](1, 2) == 3 and decoded["lam"].args[2] == 0.5
    assert decoded["plain"].args[0] is abs
    # Each record decodes to its own task's arguments (no bytes left over between them).
    assert [type(a).__name__ for a in decoded["lam"].args] == ["function", "ExternalRef",
                                                                "float64"]


# -- the blob of plain workflows: the C pickler, the same bytes -----------------------------
@task
def scaled(x: Any, factor: float = 1.0) -> Any:
    return x


def _blob_both_ways(wf: Workflow) -> tuple[bytes, bytes]:
    """The blob as encode() makes it, and as cloudpickle alone would have made it."""
    import dataclasses

    from faasplan.workflow import codec

    order = wf.topological_order
    prepared = codec._Arguments.of(wf, order, codec.DEFAULT_LITERAL_THRESHOLD)
    kwargs = {"literal_threshold": codec.DEFAULT_LITERAL_THRESHOLD, "dedupe_code": True,
              "code_cache": None}
    fast = codec._encode_tasks(wf, wf.name, wf.requirements, wf.external_inputs, order,
                               prepared=prepared, **kwargs)
    slow = codec._encode_tasks(wf, wf.name, wf.requirements, wf.external_inputs, order,
                               prepared=dataclasses.replace(prepared, plain=False), **kwargs)
    return fast.blob, slow.blob


def test_a_plain_workflow_blob_is_what_cloudpickle_makes() -> None:
    from faasplan.workloads import REGISTRY, layered

    hinted = Workflow([combine({"a": (source(1), [2])}, [[3]]),
                       scaled(source(4), 2.5, task_id="s",
                              profile=TaskProfile(12.5, 100))], name="hinted")
    for wf in (layered(300, 20, 1), REGISTRY["tree_reduction"](), hinted):
        fast, slow = _blob_both_ways(wf)
        assert fast == slow
        assert shape(decode(fast)) == shape(wf)


def test_arguments_cloudpickle_must_take_by_value_still_travel_in_the_blob() -> None:
    class Local:  # a local class: the C pickler cannot pickle its instances
        def __init__(self, v: int) -> None:
            self.v = v

    wf = Workflow([scaled(Local(3), task_id="local"), scaled(source(1), task_id="plain")],
                  name="by-value")
    decoded = decode(encode(wf).blob)
    assert decoded.tasks["local"].args[0].v == 3
    # Profiles given as numpy numbers are left to cloudpickle too, and keep their values.
    wf = Workflow(scaled(source(1), task_id="np",
                         profile=TaskProfile(np.float64(7.5), 3)), name="np-profile")
    assert decode(encode(wf).blob).tasks["np"].profile == TaskProfile(7.5, 3)


def test_task_profiles_pickle_small_and_older_pickles_still_load() -> None:
    import pickle

    profile = TaskProfile(1.5, 10)
    data = pickle.dumps(profile, protocol=5)
    # The dataclass-state form that earlier versions wrote.
    old = (b"\x80\x05\x95.\x00\x00\x00\x00\x00\x00\x00\x8c\x16faasplan.workflow.task\x94"
           b"\x8c\x0bTaskProfile\x94\x93\x94)\x81\x94]\x94(G?\xf8\x00\x00\x00\x00\x00\x00K\ne"
           b"b.")
    assert pickle.loads(data) == profile and len(data) < len(old)
    assert pickle.loads(old) == profile
    with pytest.raises(ValueError, match="exec_ms"):
        pickle.loads(pickle.dumps(profile).replace(b"?\xf8", b"\xbf\xf8"))
