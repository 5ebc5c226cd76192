"""The example workloads: real results checked against independent computations."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import cloudpickle
import numpy as np
import pytest
from scipy import ndimage

from faasplan.workflow import TaskFunction, TaskNode, Workflow
from faasplan.workflow.local import profile, run_local
from faasplan.workloads import (
    REGISTRY,
    gemm,
    image_pipeline,
    montage_like,
    tree_reduction,
    wordcount,
)
from faasplan.workloads.wordcount import bundled_text, split_text


def count_by_function(wf: Workflow) -> Counter[str]:
    return Counter(node.func.name.rsplit(".", 1)[-1] for node in wf.tasks.values())


# -- registry -----------------------------------------------------------------------------

def test_registry_lists_the_five_builders_read_only() -> None:
    assert dict(REGISTRY) == {"tree_reduction": tree_reduction, "gemm": gemm,
                              "wordcount": wordcount, "image_pipeline": image_pipeline,
                              "montage_like": montage_like}
    with pytest.raises(TypeError):
        REGISTRY["other"] = gemm  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_defaults_build_named_workflows_with_picklable_tasks(name: str) -> None:
    wf = REGISTRY[name]()
    assert isinstance(wf, Workflow)
    assert wf.name == name
    if name != "wordcount":
        assert "numpy" in wf.requirements
    roots = set(wf.roots)
    for tid, node in wf.tasks.items():
        assert isinstance(node.func, TaskFunction)
        # The module attribute is the TaskFunction, so the code travels by value.
        copy = cloudpickle.loads(cloudpickle.dumps(node.func.fn))
        assert copy.__qualname__ == node.func.fn.__qualname__
        if tid in roots:
            expected = run_local(Workflow(node))
            got = copy(*node.args, **node.kwargs)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_workloads_are_deterministic(name: str) -> None:
    first, second = run_local(REGISTRY[name]()), run_local(REGISTRY[name]())
    if isinstance(first, np.ndarray):
        np.testing.assert_array_equal(first, second)
    else:
        assert first == second


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_profile_of_each_workload(name: str) -> None:
    wf = REGISTRY[name]()
    prof = profile(wf)
    assert set(prof) == set(wf.topological_order)
    assert all(p.exec_ms >= 0 and p.output_bytes > 0 for p in prof.values())


# -- tree reduction -----------------------------------------------------------------------

@pytest.mark.parametrize("leaves", [1, 2, 3, 5, 8, 64])
def test_tree_reduction_sum_in_closed_form(leaves: int) -> None:
    size = 10
    wf = tree_reduction(leaves=leaves, leaf_size=size)
    assert len(wf) == 2 * leaves - 1
    assert count_by_function(wf)["make_leaf"] == leaves
    j = np.arange(size)
    expected = size * leaves * (leaves - 1) / 2 + leaves * j
    np.testing.assert_array_equal(run_local(wf), expected)


def test_tree_reduction_defaults() -> None:
    wf = tree_reduction()
    assert len(wf) == 127
    assert len(wf.roots) == 64 and len(wf.sinks) == 1
    # A balanced tree over 64 leaves: 6 levels of adds above the leaves.
    length, _ = wf.critical_path(lambda _: 1.0)
    assert length == 7
    assert float(run_local(wf).sum()) == sum(range(64 * 1024))


def test_tree_reduction_profile_sizes_follow_leaf_size() -> None:
    wf = tree_reduction(leaves=4, leaf_size=100)
    assert {p.output_bytes for p in profile(wf).values()} == {800}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"leaves": 0}, r"tree_reduction: leaves must be an integer >= 1, got 0"),
    ({"leaves": 2.0}, r"leaves must be an integer >= 1, got 2.0"),
    ({"leaf_size": 0}, r"tree_reduction: leaf_size must be an integer >= 1"),
])
def test_tree_reduction_rejects_bad_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tree_reduction(**kwargs)  # type: ignore[arg-type]


# -- gemm ---------------------------------------------------------------------------------

def reference_matrices(n: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.fromfunction(lambda r, c: ((3 * r + 5 * c) % 17 - 8) / 8.0, (n, n), dtype=int)
    b = np.fromfunction(lambda r, c: ((7 * r + 2 * c) % 19 - 9) / 16.0, (n, n), dtype=int)
    return a, b


@pytest.mark.parametrize(("n", "block"), [(256, 64), (12, 4), (10, 10), (6, 1)])
def test_gemm_equals_direct_product(n: int, block: int) -> None:
    a, b = reference_matrices(n)
    c = run_local(gemm(n, block))
    assert c.shape == (n, n)
    assert np.allclose(c, a @ b)


def test_gemm_task_counts() -> None:
    counts = count_by_function(gemm())
    assert counts == {"make_block": 32, "multiply": 64, "sum_blocks": 16, "assemble": 1}
    assert len(gemm(12, 4)) == 2 * 9 + 27 + 9 + 1


def test_gemm_sum_takes_a_list_and_assemble_a_grid() -> None:
    wf = gemm(8, 4)
    sink = wf.tasks[wf.sinks[0]]
    (grid,) = sink.args
    assert [len(row) for row in grid] == [2, 2]
    assert all(isinstance(cell, TaskNode) for row in grid for cell in row)
    (parts,) = grid[0][1].args
    assert isinstance(parts, list) and len(parts) == 2


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n": 250, "block": 64}, r"gemm: n=250 is not divisible by block=64"),
    ({"n": 0}, r"gemm: n must be an integer >= 1, got 0"),
    ({"block": -2}, r"gemm: block must be an integer >= 1, got -2"),
])
def test_gemm_rejects_bad_parameters(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gemm(**kwargs)


# -- wordcount ----------------------------------------------------------------------------

def reference_count(text: str) -> Counter[str]:
    # Written differently from the workload: blank out everything but letters, digits
    # and apostrophes, then split (no edge apostrophes occur in these texts).
    return Counter(re.sub(r"[^a-z0-9']+", " ", text.lower()).split())


@pytest.mark.parametrize("chunks", [1, 3, 8, 50])
def test_wordcount_bundled_text(chunks: int) -> None:
    wf = wordcount(chunks)
    assert len(wf) == chunks + 1
    text = bundled_text()
    result = run_local(wf)
    assert isinstance(result, Counter)
    assert result == reference_count(text)
    assert result["master's"] == 1


def test_bundled_text_is_a_real_text_under_50_kb() -> None:
    text = bundled_text()
    assert 2_000 < len(text.encode()) <= 50_000
    assert sum(reference_count(text).values()) > 500


def test_wordcount_given_text_with_words_at_chunk_borders() -> None:
    text = "alpha beta gamma delta alpha beta alpha"
    for chunks in range(1, 12):
        assert run_local(wordcount(chunks, text)) == Counter(
            {"alpha": 3, "beta": 2, "gamma": 1, "delta": 1})


def test_wordcount_reduce_takes_a_dict_of_map_tasks() -> None:
    wf = wordcount(3, "a b c d e f")
    (partials,) = wf.tasks[wf.sinks[0]].args
    assert list(partials) == ["chunk-0", "chunk-1", "chunk-2"]
    assert all(isinstance(node, TaskNode) for node in partials.values())


@pytest.mark.parametrize("chunks", [1, 2, 7, 40])
def test_split_text_keeps_words_whole(chunks: int) -> None:
    text = "one two  three\nfour five six seven"
    pieces = split_text(text, chunks)
    assert len(pieces) == chunks
    assert "".join(pieces) == text
    assert sorted(w for p in pieces for w in p.split()) == sorted(text.split())


def test_wordcount_empty_text() -> None:
    assert run_local(wordcount(4, "")) == Counter()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"chunks": 0}, r"wordcount: chunks must be an integer >= 1, got 0"),
    ({"text": b"bytes"}, r"wordcount: text must be a str or None, got bytes"),
])
def test_wordcount_rejects_bad_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        wordcount(**kwargs)  # type: ignore[arg-type]


# -- image pipeline -----------------------------------------------------------------------

def reference_image_stats(images: int, size: int, seed: int) -> np.ndarray:
    pixels = []
    for i in range(images):
        img = np.random.default_rng([seed, i]).random((size, size))
        blurred = ndimage.uniform_filter(img, size=3, mode="nearest")
        edge = np.hypot(ndimage.sobel(blurred, axis=0, mode="nearest"),
                        ndimage.sobel(blurred, axis=1, mode="nearest"))
        small = (edge[::2, ::2] + edge[1::2, ::2] + edge[::2, 1::2] + edge[1::2, 1::2]) / 4
        pixels.append(small.ravel())
    allpix = np.concatenate(pixels)
    return np.array([allpix.mean(), allpix.std(), allpix.min(), allpix.max()])


@pytest.mark.parametrize(("images", "size", "seed"), [(4, 128, 0), (2, 10, 7), (1, 2, 3)])
def test_image_pipeline_matches_scipy(images: int, size: int, seed: int) -> None:
    wf = image_pipeline(images, size, seed)
    assert len(wf) == 4 * images + 1
    assert count_by_function(wf)["blur"] == images
    result = run_local(wf)
    assert result.shape == (4,)
    np.testing.assert_allclose(result, reference_image_stats(images, size, seed), rtol=1e-12)


def test_image_pipeline_seed_changes_result() -> None:
    assert not np.array_equal(run_local(image_pipeline(seed=0)),
                              run_local(image_pipeline(seed=1)))


def test_image_pipeline_stats_output_matches_its_constant_hint() -> None:
    wf = image_pipeline(images=2, size=8)
    sink = wf.sinks[0]
    hint = wf.tasks[sink].func.io
    assert hint is not None
    assert profile(wf)[sink].output_bytes == hint.output_bytes(0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"images": 0}, r"image_pipeline: images must be an integer >= 1, got 0"),
    ({"size": 9}, r"image_pipeline: size must be even to downsample by 2, got 9"),
    ({"size": 0}, r"image_pipeline: size must be an integer >= 2, got 0"),
    ({"seed": -1}, r"image_pipeline: seed must be an integer >= 0, got -1"),
])
def test_image_pipeline_rejects_bad_parameters(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        image_pipeline(**kwargs)


# -- montage-like -------------------------------------------------------------------------

def reference_sky(rows: int, cols: int) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:cols].astype(float)
    return np.sin(r / 5) + np.cos(c / 7) + 0.5 * np.sin((r + c) / 11)


@pytest.mark.parametrize(("width", "tile", "overlap"), [(8, 32, 8), (1, 6, 2), (5, 9, 4)])
def test_montage_without_noise_recovers_the_sky_up_to_one_offset(
        width: int, tile: int, overlap: int) -> None:
    wf = montage_like(width=width, tile=tile, overlap=overlap, noise=0.0)
    assert len(wf) == 3 * width + 2
    mosaic = run_local(wf)
    cols = (width - 1) * (tile - overlap) + tile
    assert mosaic.shape == (tile, cols)
    residual = mosaic - reference_sky(tile, cols)
    assert np.ptp(residual) < 1e-9


def test_montage_offsets_matter() -> None:
    # Without the background step the tiles disagree in their overlaps; this checks the
    # model really removes a visible, tile-dependent offset.
    wf = montage_like(width=4, noise=0.0)
    fits = [tid for tid in wf.topological_order if tid.startswith("diff_fit")]
    diffs = [float(run_local(Workflow(wf.tasks[t]))) for t in fits]
    assert len(diffs) == 3 and min(abs(d) for d in diffs) > 1e-3


def test_montage_with_noise_stays_close() -> None:
    mosaic = run_local(montage_like(noise=0.01))
    residual = mosaic - reference_sky(*mosaic.shape)
    assert 0 < residual.std() < 0.05


def test_montage_shape_fan_out_fan_in_fan_out_fan_in() -> None:
    wf = montage_like(width=6)
    assert count_by_function(wf) == {"project": 6, "diff_fit": 5, "concat_fits": 1,
                                     "bg_model": 1, "background": 6, "add_mosaic": 1}
    model = next(t for t in wf.topological_order if t.startswith("bg_model"))
    assert len(wf.downstream(model)) == 6
    (placed,) = wf.tasks[wf.sinks[0]].args
    assert all(isinstance(start, int) and isinstance(node, TaskNode) for start, node in placed)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"width": 0}, r"montage_like: width must be an integer >= 1, got 0"),
    ({"tile": 1}, r"montage_like: tile must be an integer >= 2, got 1"),
    ({"overlap": 32}, r"montage_like: overlap must be an integer with 1 <= overlap < tile"),
    ({"overlap": 0}, r"overlap must be an integer with 1 <= overlap < tile \(32\), got 0"),
    ({"noise": -0.5}, r"montage_like: noise must be >= 0, got -0.5"),
])
def test_montage_rejects_bad_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        montage_like(**kwargs)  # type: ignore[arg-type]


def test_all_builders_have_defaults_for_every_parameter() -> None:
    import inspect

    builders: list[Callable[..., Workflow]] = list(REGISTRY.values())
    for builder in builders:
        for param in inspect.signature(builder).parameters.values():
            assert param.default is not inspect.Parameter.empty, (builder.__name__, param.name)
