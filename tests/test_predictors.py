"""Predictors: metrics schema, fitted models, SLA levels, accuracy against the baseline."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faasplan.predictors import (
    BaselinePredictor,
    Defaults,
    Empirical,
    MetricsError,
    MetricsRecord,
    Predictor,
    Transfer,
    accuracy_report,
    fit,
    frame_to_records,
    load_metrics,
    parse_sla,
    records_to_frame,
    save_metrics,
    validate_records,
)
from faasplan.workflow import io

MEMORIES = (256, 512, 1024, 2048)


def synthetic(rng: np.random.Generator, *, runs: int = 10, per_run: int = 20,
              size_exponent: float = 0.8, memory_exponent: float = 0.6,
              constant_ms: float = 0.0, noise: str = "lognormal",
              memories: tuple[int, ...] = MEMORIES, function: str = "f",
              output: str = "half", transfer_exponent: float = 0.5) -> list[MetricsRecord]:
    """Records from known models with 10 % multiplicative noise."""

    def factor() -> float:
        eps = rng.normal(0.0, 0.1)
        return float(math.exp(eps) if noise == "lognormal" else 1.0 + eps)

    records = []
    for run in range(runs):
        for i in range(per_run):
            x = int(10 ** rng.uniform(4, 8))
            memory = int(rng.choice(memories))
            exec_ms = (constant_ms + 0.002 * x ** size_exponent
                       * (memory / 1024) ** -memory_exponent) * factor()
            out = {"half": x // 2, "sqrt": int(3 * x ** 0.5 * factor()),
                   "fixed": int(4096 * factor())}[output]
            nbytes = int(10 ** rng.uniform(3, 8))
            down = (2.0 + nbytes / (5e4 * (memory / 1024) ** transfer_exponent)) * factor()
            up = (5.0 + out / (2e4 * (memory / 1024) ** transfer_exponent)) * factor()
            state = ("cold", "warm", "none")[i % 3]
            start = {"cold": 300 * (memory / 1024) ** -0.2 * factor(),
                     "warm": 5 * factor(), "none": 0.0}[state]
            records.append(MetricsRecord(
                "wf", f"run-{run}", "uniform", f"t{run}-{i}", function, memory, x, out,
                exec_ms, downloads=(Transfer(nbytes, down),), uploads=(Transfer(out, up),),
                startup=state, startup_ms=start))
    return records


@pytest.fixture(scope="module")
def history() -> list[MetricsRecord]:
    return synthetic(np.random.default_rng(7))


@pytest.fixture(scope="module")
def predictor(history: list[MetricsRecord]) -> Predictor:
    return fit(history)


# -- no history ---------------------------------------------------------------------------


def test_empty_predictor_uses_defaults() -> None:
    d = Defaults()
    p = Predictor.empty()
    expected_exec = d.exec_constant_ms + d.exec_ms_per_mb * 2.0 * 2.0 ** -d.exec_memory_exponent
    assert p.execution_ms("anything", 2_000_000, 2048) == pytest.approx(expected_exec)
    bandwidth = d.transfer_bandwidth_mb_s * 1000  # bytes per ms at 1 GB
    assert p.transfer_ms(10**6, 1024, "upload") == pytest.approx(
        d.transfer_latency_ms + 10**6 / bandwidth)
    assert p.startup_ms(512, "cold") == d.cold_start_ms
    assert p.startup_ms(512, "warm", "p99") == d.warm_start_ms
    assert p.output_bytes("anything", 1234) == pytest.approx(1234 * d.output_ratio)
    got = p.predict_execution("anything", 10, 1024, "p90")
    assert (got.samples, got.source) == (0, "default")
    assert p.samples("anything", "exec") == 0 and p.functions == ()


def test_fit_on_no_records_is_the_empty_predictor() -> None:
    fitted, empty = fit([], hints={"f": io.linear(3.0)}), Predictor.empty({"f": io.linear(3.0)})
    for p in (fitted, empty):
        assert p.output_bytes("f", 10) == 30.0
        assert p.predict_transfer(100, 512, "download").source == "default"


def test_predictor_survives_pickling(predictor: Predictor) -> None:
    # Planners ship the predictor to other processes.
    copy = pickle.loads(pickle.dumps(predictor))
    for sla in ("average", "p90"):
        assert copy.execution_ms("f", 10**6, 768, sla) == predictor.execution_ms(
            "f", 10**6, 768, sla)
        assert copy.startup_ms(768, "cold", sla) == predictor.startup_ms(768, "cold", sla)


def test_custom_defaults_are_used() -> None:
    p = Predictor.empty(defaults=Defaults(cold_start_ms=900.0, output_ratio=2.0))
    assert p.startup_ms(1024, "cold") == 900.0
    assert p.output_bytes("f", 10) == 20.0


def test_defaults_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="transfer_bandwidth_mb_s"):
        Defaults(transfer_bandwidth_mb_s=0.0)
    with pytest.raises(ValueError, match="cold_start_ms"):
        Defaults(cold_start_ms=-1.0)


# -- SLA ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sla", "q"), [("average", None), ("p50", 0.5), ("p90", 0.9),
                                        ("p99", 0.99), ("p99.9", 0.999), ("p5", 0.05)])
def test_parse_sla(sla: str, q: float | None) -> None:
    assert parse_sla(sla) == (None if q is None else pytest.approx(q))


@pytest.mark.parametrize("sla", ["median", "P90", "p", "p0", "p100", "p-5", "p9x", "mean", ""])
def test_unknown_sla_rejected_with_valid_forms(sla: str, predictor: Predictor) -> None:
    with pytest.raises(ValueError, match=r"unknown sla .*'average', or 'pNN'"):
        parse_sla(sla)
    with pytest.raises(ValueError, match="unknown sla"):
        predictor.execution_ms("f", 10**6, 1024, sla)
    with pytest.raises(ValueError, match="unknown sla"):
        Predictor.empty().startup_ms(1024, "cold", sla)


def test_empirical_quantiles_match_numpy() -> None:
    values = np.random.default_rng(1).lognormal(0.0, 0.5, size=37)
    dist = Empirical.of(values.tolist())
    for q in (0.0, 0.1, 0.5, 0.77, 0.9, 0.95, 0.99, 1.0):
        assert dist.quantile(q) == pytest.approx(float(np.quantile(values, q)))
    assert dist.at("p93.5") == pytest.approx(float(np.quantile(values, 0.935)))
    assert dist.at("average") == pytest.approx(float(values.mean()))


def test_sla_levels_are_ordered(predictor: Predictor) -> None:
    levels = [predictor.execution_ms("f", 10**6, 1024, s) for s in ("p50", "p90", "p95", "p99")]
    assert levels == sorted(levels) and levels[0] < levels[-1]


# -- execution time -----------------------------------------------------------------------


@pytest.mark.parametrize("noise", ["lognormal", "normal"])
def test_exec_exponents_recovered(noise: str) -> None:
    records = synthetic(np.random.default_rng(11), size_exponent=0.8, memory_exponent=0.6,
                        noise=noise)
    model = fit(records).exec_model("f")
    assert model.size_exponent == pytest.approx(0.8, abs=0.05)
    assert model.memory_exponent == pytest.approx(0.6, abs=0.05)
    assert model.size_exponent_fitted and model.memory_exponent_fitted
    assert model.constant_ms == 0.0  # no constant in the data, none selected
    assert (model.samples, model.source) == (len(records), "fitted")


def test_exec_constant_term_selected_when_present() -> None:
    records = synthetic(np.random.default_rng(5), constant_ms=200.0, size_exponent=1.0,
                        memory_exponent=0.5)
    model = fit(records).exec_model("f")
    assert model.constant_ms == pytest.approx(200.0, rel=0.2)
    assert model.size_exponent == pytest.approx(1.0, abs=0.05)
    assert model.memory_exponent == pytest.approx(0.5, abs=0.05)


def test_p90_coverage_on_fresh_data(predictor: Predictor) -> None:
    fresh = synthetic(np.random.default_rng(1234), runs=40)
    covered_exec = np.mean([r.exec_ms <= predictor.execution_ms(
        r.function, r.input_bytes, r.memory_mb, "p90") for r in fresh])
    covered_down = np.mean([t.ms <= predictor.transfer_ms(t.nbytes, r.memory_mb, "download",
                                                          "p90")
                            for r in fresh for t in r.downloads])
    assert 0.85 <= covered_exec <= 0.95
    assert 0.85 <= covered_down <= 0.95


def test_average_is_the_mean_of_fresh_observations(predictor: Predictor) -> None:
    rng = np.random.default_rng(3)
    truth = 0.002 * (10**6) ** 0.8 * 2.0 ** -0.6
    observed = truth * np.exp(rng.normal(0.0, 0.1, size=20_000))
    assert predictor.execution_ms("f", 10**6, 2048) == pytest.approx(observed.mean(), rel=0.03)


def test_unseen_memory_predicted_through_exponent(predictor: Predictor) -> None:
    model = predictor.exec_model("f")
    low, mid, high = (predictor.execution_ms("f", 10**7, m) for m in (1024, 1536, 2048))
    assert high < mid < low
    assert mid / low == pytest.approx(1.5 ** -model.memory_exponent)
    assert predictor.execution_ms("f", 10**7, 4096) < high  # beyond the data, same exponent


def test_single_memory_keeps_default_exponent() -> None:
    records = synthetic(np.random.default_rng(2), memories=(1024,))
    model = fit(records, defaults=Defaults(exec_memory_exponent=0.25)).exec_model("f")
    assert not model.memory_exponent_fitted and model.memory_exponent == 0.25
    assert model.size_exponent == pytest.approx(0.8, abs=0.05)


def test_equal_inputs_give_size_independent_time() -> None:
    records = [MetricsRecord("wf", "r", "p", f"t{i}", "root", 512, 0, 10, 40.0 + i)
               for i in range(5)]
    model = fit(records).exec_model("root")
    assert model.size_exponent == 0.0 and not model.size_exponent_fitted
    assert fit(records).execution_ms("root", 0, 512) == pytest.approx(42.0, rel=0.01)


# -- output size --------------------------------------------------------------------------


def test_hint_only_prediction_reports_no_samples() -> None:
    p = Predictor.empty(hints={"f": io.linear(0.25), "g": io.power(0.5, 3.0),
                               "h": io.constant(64)})
    got = p.predict_output("f", 1000, "p99")
    assert (got.value, got.samples, got.source) == (250.0, 0, "hint")
    assert p.output_bytes("g", 100) == pytest.approx(30.0)
    assert p.output_bytes("h", 10**9) == 64.0
    assert p.samples("f", "output") == 0
    # a hint given with the query serves functions without data
    assert p.predict_output("x", 10, hint=io.linear(2.0)).value == 20.0


def test_hint_used_below_minimum_samples_data_above() -> None:
    few = synthetic(np.random.default_rng(4), runs=1, per_run=2)
    got = fit(few, hints={"f": io.linear(0.9)}).predict_output("f", 1000)
    assert (got.value, got.samples, got.source) == (900.0, 0, "hint")
    many = synthetic(np.random.default_rng(4), runs=2)
    got = fit(many, hints={"f": io.linear(0.9)}).predict_output("f", 1000)
    assert got.value == pytest.approx(500.0, rel=0.01)  # the data say half, not 0.9
    assert (got.samples, got.source) == (len(many), "fitted")


def test_power_hint_fits_coefficient_with_hint_exponent() -> None:
    records = synthetic(np.random.default_rng(8), output="sqrt")
    model = fit(records, hints={"f": io.power(0.5)}).output_model("f")
    assert (model.kind, model.exponent) == ("power", 0.5)
    assert model.coefficient == pytest.approx(3.0, rel=0.03)


def test_constant_hint_uses_median_and_no_hint_fits_power_law() -> None:
    records = synthetic(np.random.default_rng(9), output="fixed")
    const = fit(records, hints={"f": io.constant(1)}).output_model("f")
    assert const.kind == "constant"
    assert const.coefficient == pytest.approx(np.median([r.output_bytes for r in records]))
    sqrt = fit(synthetic(np.random.default_rng(9), output="sqrt")).output_model("f")
    assert sqrt.kind == "power" and sqrt.exponent == pytest.approx(0.5, abs=0.02)


# -- transfers and start-up ---------------------------------------------------------------


def test_transfer_parameters_recovered(predictor: Predictor) -> None:
    down = predictor.transfer_model("download")
    assert down.memory_exponent == pytest.approx(0.5, abs=0.05)
    assert down.bandwidth == pytest.approx(5e4, rel=0.1)
    assert down.latency_ms == pytest.approx(2.0, rel=0.25)
    up = predictor.transfer_model("upload")
    assert up.latency_ms == pytest.approx(5.0, rel=0.25)
    assert predictor.samples(None, "download") == 200


def test_streamed_transfers_are_not_fitted(history: list[MetricsRecord]) -> None:
    # A streamed download overlaps the upload; its time says nothing about bandwidth.
    noisy = [replace(r, downloads=(*r.downloads, Transfer(10**8, 0.5, streamed=True)))
             for r in history]
    model = fit(noisy).transfer_model("download")
    assert model.samples == len(history)
    assert model.memory_exponent == pytest.approx(0.5, abs=0.05)


def test_transfer_direction_and_start_state_checked(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="unknown transfer direction 'sideways'"):
        predictor.transfer_ms(10, 1024, "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown start state 'none'"):
        predictor.startup_ms(1024, "none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="memory_mb must be > 0"):
        predictor.startup_ms(0, "cold")


def test_startup_per_memory_and_unseen_between_neighbours(predictor: Predictor,
                                                          history: list[MetricsRecord]) -> None:
    at_512 = [r.startup_ms for r in history if r.startup == "cold" and r.memory_mb == 512]
    got = predictor.predict_startup(512, "cold")
    assert got.value == pytest.approx(np.mean(at_512))
    assert (got.samples, got.source) == (len(at_512), "fitted")
    assert predictor.startup_ms(512, "cold", "p90") == pytest.approx(np.quantile(at_512, 0.9))
    model = predictor.startup_model("cold")
    assert model.memory_exponent == pytest.approx(-0.2, abs=0.05)
    c512, c768, c1024 = (predictor.startup_ms(m, "cold") for m in (512, 768, 1024))
    assert c1024 < c768 < c512
    c2048, c4096 = predictor.startup_ms(2048, "cold"), predictor.startup_ms(4096, "cold")
    assert c4096 == pytest.approx(c2048 * 2.0 ** model.memory_exponent)
    assert predictor.predict_startup(768, "cold").samples == model.samples


# -- metrics schema -----------------------------------------------------------------------


def test_frame_round_trip(history: list[MetricsRecord]) -> None:
    df = records_to_frame(history)
    assert list(df.columns)[:5] == ["workflow_hash", "run_id", "planner", "task", "function"]
    assert df.loc[0, "downloads"] == [{"nbytes": history[0].downloads[0].nbytes,
                                       "ms": history[0].downloads[0].ms, "streamed": False}]
    assert frame_to_records(df) == history


def test_parquet_round_trip_and_append(tmp_path: Path, history: list[MetricsRecord]) -> None:
    path = tmp_path / "metrics.parquet"
    save_metrics(history[:30], path)
    assert frame_to_records(load_metrics(path)) == history[:30]
    save_metrics(records_to_frame(history[30:50]), path)
    assert frame_to_records(load_metrics(path)) == history[:50]
    save_metrics(history[:5], path, append=False)
    assert len(load_metrics(path)) == 5
    assert fit(path).samples("f", "exec") == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.parquet"]


def test_failed_append_keeps_old_file(tmp_path: Path, history: list[MetricsRecord]) -> None:
    path = tmp_path / "metrics.parquet"
    save_metrics(history[:10], path)
    bad = records_to_frame(history[10:12])
    bad.loc[1, "exec_ms"] = -5.0
    with pytest.raises(MetricsError, match="exec_ms"):
        save_metrics(bad, path)
    assert frame_to_records(load_metrics(path)) == history[:10]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.parquet"]


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet"):
        load_metrics(tmp_path / "missing.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(MetricsError, match=r"junk\.parquet"):
        load_metrics(junk)
    other = tmp_path / "other.parquet"
    pd.DataFrame({"task": ["a"], "speed": [1.0]}).to_parquet(other)
    with pytest.raises(MetricsError, match=r"other.parquet.*missing.*exec_ms.*unknown.*speed"):
        load_metrics(other)


@pytest.mark.parametrize(("column", "value", "field"), [
    ("exec_ms", -1.0, "exec_ms"),
    ("exec_ms", float("nan"), "exec_ms"),
    ("input_bytes", -3, "input_bytes"),
    ("output_bytes", 2.5, "output_bytes"),
    ("startup", "lukewarm", "startup"),
    ("startup_ms", float("inf"), "startup_ms"),
    ("memory_mb", 0, "memory_mb"),
    ("memory_mb", 1000.5, "memory_mb"),
    ("function", "", "function"),
    ("downloads", [{"nbytes": 10, "ms": -2.0}], r"downloads\[0\]\.ms"),
    ("uploads", [{"nbytes": 10}], r"uploads\[0\]"),
])
def test_invalid_records_rejected(history: list[MetricsRecord], column: str, value: object,
                                  field: str) -> None:
    df = records_to_frame(history[:5])
    if column in ("downloads", "uploads"):
        df[column] = [value if i == 2 else lst for i, lst in enumerate(df[column])]
    else:
        df[column] = df[column].astype(object)
        df.loc[2, column] = value
    with pytest.raises(MetricsError, match=rf"record 2 \(task 't0-2'\): {field} .*1 invalid"):
        validate_records(df)
    with pytest.raises(MetricsError, match=field):
        fit(df)


def test_memory_outside_allowed_sizes_rejected(history: list[MetricsRecord]) -> None:
    df = records_to_frame(history[:20])
    first_big = int(np.flatnonzero(df["memory_mb"].to_numpy() == 2048)[0])
    with pytest.raises(MetricsError, match=rf"record {first_big} .*memory_mb is 2048, not one"):
        validate_records(df, allowed_memory={256, 512, 1024})
    validate_records(df, allowed_memory=set(MEMORIES))


def test_continuation_must_have_no_startup_time() -> None:
    with pytest.raises(MetricsError, match=r"startup is 'none'.*startup_ms"):
        MetricsRecord("wf", "r", "p", "t", "f", 1024, 1, 1, 1.0, startup="none", startup_ms=3.0)


def test_columns_checked(history: list[MetricsRecord]) -> None:
    df = records_to_frame(history[:3])
    with pytest.raises(MetricsError, match=r"missing \['exec_ms'\], unknown \['colour'\]"):
        validate_records(df.drop(columns=["exec_ms"]).assign(colour="red"))


def test_records_validate_on_construction() -> None:
    with pytest.raises(MetricsError, match="nbytes=-1"):
        Transfer(-1, 2.0)
    with pytest.raises(MetricsError, match="task 'x': exec_ms must be a finite"):
        MetricsRecord("wf", "r", "p", "x", "f", 1024, 1, 1, float("nan"))
    with pytest.raises(MetricsError, match="memory_mb must be a positive whole"):
        MetricsRecord("wf", "r", "p", "x", "f", -512, 1, 1, 1.0)


# -- baseline and accuracy ----------------------------------------------------------------


def test_baseline_window_and_memory_rules() -> None:
    sizes = [1000, 1030, 1060, 1090, 1120, 1180, 2000]
    rates = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # ms per byte
    records = [MetricsRecord("wf", "r", "p", f"t{i}", "f", 512, x, 2 * x, x * k)
               for i, (x, k) in enumerate(zip(sizes, rates, strict=True))]
    base = BaselinePredictor.fit(records_to_frame(records))
    # Windows of 5 % and 10 % hold 2 and 4 samples; 15 % holds the first 5.
    assert base.execution_ms("f", 1000, 512) == pytest.approx(3.0 * 1000)
    # No sample at 2048 MB: scale by (512 / 2048) ** 0.3.
    assert base.execution_ms("f", 1000, 2048) == pytest.approx(3000 * 0.25 ** 0.3)
    assert base.output_bytes("f", 10) == pytest.approx(20.0)
    # Five samples at 1024 MB are too few to use alone: every sample is scaled to 512 MB.
    at_1024 = [MetricsRecord("wf", "r", "p", f"u{i}", "f", 1024, 1000, 1, 10_000.0)
               for i in range(6)]
    base = BaselinePredictor.fit(records_to_frame(records + at_1024[:5]))
    in_window = [1.0, 2.0] + [10.0 * 2.0 ** 0.3] * 5  # within 5 % of 1000 B
    assert base.execution_ms("f", 1000, 1024) == pytest.approx(
        np.mean(in_window) * 1000 * 0.5 ** 0.3)
    # Six are enough: only they count, unscaled.
    base = BaselinePredictor.fit(records_to_frame(records + at_1024))
    assert base.execution_ms("f", 1000, 1024) == pytest.approx(10_000.0)


def test_baseline_transfer_rule() -> None:
    def rec(i: int, memory: int, nbytes: int, ms: float) -> MetricsRecord:
        return MetricsRecord("wf", "r", "p", f"t{i}", "f", memory, 1, 1, 1.0,
                             downloads=(Transfer(nbytes, ms),))

    records = [rec(i, 512, 1000 * (i + 1), 10.0) for i in range(4)]  # 100..400 B/ms
    base = BaselinePredictor.fit(records_to_frame(records))
    assert base.transfer_ms(5000, 512, "download") == pytest.approx(5000 / 250.0)
    assert base.transfer_ms(5000, 2048, "download") == pytest.approx(5000 / (250 * 4 ** 0.3))
    exact = records + [rec(10 + i, 2048, 1000, 1.0) for i in range(6)]  # 1000 B/ms
    base = BaselinePredictor.fit(records_to_frame(exact))
    assert base.transfer_ms(5000, 2048, "download") == pytest.approx(5.0)


def test_accuracy_report_beats_baseline_when_memory_exponent_is_steep() -> None:
    # Many memory sizes, few samples each: the baseline must scale across memory with
    # its fixed 0.3 exponent while the truth is 0.7.
    rng = np.random.default_rng(21)
    spread = tuple(range(128, 3009, 64))
    records = synthetic(rng, runs=8, per_run=25, memory_exponent=0.7, transfer_exponent=0.7,
                        memories=spread)
    report = accuracy_report(records)
    assert list(report.columns) == ["function", "model", "samples", "mdape_ours",
                                    "mdape_baseline", "p90_coverage"]
    rows = report.set_index(["model", "function"])
    for model in ("exec", "download", "upload"):
        assert rows.loc[(model, "*"), "samples"] == len(records)
        assert rows.loc[(model, "*"), "mdape_ours"] < rows.loc[(model, "*"), "mdape_baseline"]
        assert 80.0 <= rows.loc[(model, "*"), "p90_coverage"] <= 97.0
    assert rows.loc[("exec", "*"), "mdape_ours"] < 10.0


def test_accuracy_report_needs_two_runs() -> None:
    records = synthetic(np.random.default_rng(1), runs=1)
    with pytest.raises(ValueError, match="at least 2 runs"):
        accuracy_report(records)


def test_samples_counts(predictor: Predictor, history: list[MetricsRecord]) -> None:
    assert predictor.samples("f", "exec") == len(history)
    assert predictor.samples(None, "cold") == sum(r.startup == "cold" for r in history)
    assert predictor.functions == ("f",)
    with pytest.raises(ValueError, match="pass a function name"):
        predictor.samples(None, "exec")
    with pytest.raises(ValueError, match="unknown model 'speed'"):
        predictor.samples("f", "speed")  # type: ignore[arg-type]
    assert set(predictor.summary()["model"]) == {"exec", "output", "download", "upload",
                                                 "cold", "warm"}
