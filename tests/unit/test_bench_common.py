"""The bench's arithmetic: percentiles, the books of a run (lost, duplicated, non-200), windows,
profile summaries and the report. No timing, no services."""
from __future__ import annotations

from bench.common import completions_in_window, count_calls, percentile, ratio, summary_ms, worst_window
from bench.profile import summarize_collapsed
from bench.report import summarize, table


def test_percentile_is_nearest_rank_and_none_when_empty():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_summary_ms_converts_seconds_to_milliseconds():
    s = summary_ms([0.001, 0.002, 0.003])
    assert s["n"] == 3 and s["p50_ms"] == 2.0 and s["max_ms"] == 3.0
    assert summary_ms([])["p99_ms"] is None


def test_count_calls_separates_ok_lost_non200_and_wrong_answers():
    records = [
        ("r1", 0.0, 1.0, 200, "approve", "c1", None),
        ("r2", 0.0, None, None, None, None, "ReadTimeout: timed out"),
        ("r3", 0.0, 1.0, 503, None, None, None),
        ("r4", 0.0, 1.0, 200, "abort", "c4", None),
        ("r5", 0.0, 1.0, 200, "approve", "other", None),
    ]
    c = count_calls(records, decided={"r1": "c1", "r5": "c5"})
    assert (c.started, c.answered, c.ok, c.lost, c.non200, c.wrong, c.duplicated) == (5, 4, 1, 1, 1, 2, 0)
    assert c.errors == {"ReadTimeout": 1}
    assert c.statuses == {"200": 3, "503": 1}


def test_a_call_answered_twice_counts_as_duplicated():
    records = [("r1", 0.0, 1.0, 200, "approve", "c1", None), ("r1", 0.0, 1.1, 200, "approve", "c1", None)]
    assert count_calls(records).duplicated == 1


def test_completions_in_window_counts_only_200_answers_inside_it():
    records = [("a", 0, 1.5, 200, "approve", "x", None), ("b", 0, 2.5, 200, "approve", "x", None),
               ("c", 0, 1.6, 503, None, None, None), ("d", 0, None, None, None, None, "lost")]
    assert completions_in_window(records, 1.0, 2.0) == 1
    assert completions_in_window(records, 0.0, 3.0) == 2


def test_ratio_handles_missing_baselines():
    assert ratio(50, 200) == 0.25
    assert ratio(50, None) is None and ratio(None, 10) is None and ratio(5, 0) is None


def test_worst_window_is_the_most_requests_in_any_window():
    assert worst_window([0.0, 0.1, 0.2, 1.5, 1.6], 1.0) == 3
    assert worst_window([], 1.0) == 0


def test_collapsed_stacks_are_summarized_by_leaf_and_by_package():
    text = ("main (a/services/decider/logic.py:10);execute (site-packages/sqlalchemy/engine/base.py:5) 3\n"
            "main (a/services/decider/logic.py:10) 1\n")
    s = summarize_collapsed(text)
    assert s["samples"] == 4
    assert s["self"][0] == ("execute (engine/base.py)", 75.0)
    assert ("sqlalchemy", 75.0) in s["by_package"]


def _fake_results() -> dict:
    run = {"counts": {"lost": 0, "duplicated": 0}, "cycles_per_s": 150.0}
    return {
        "machine": {"nproc": 2, "memory_mb": 1, "python": "3.11"}, "started_at": "now", "elapsed_s": 1, "smoke": True,
        "baselines": {"broker_ceiling": {"cycles_per_s": 600.0},
                      "naive_sqlite": {"throughput": {"cycles_per_s": 50.0},
                                       "latency": {"decision_to_release": {"p50_ms": 60.0, "p99_ms": 110.0}},
                                       "held": {"max_n_answered": 1000, "rss_at_max_mb": 200.0}}},
        "scenarios": {"sqlite": {
            "throughput": {"runs": [run], "best": {"cycles_per_s": 150.0, "ingest": 1, "decider": 1}},
            "latency": {"counts": {"lost": 0, "duplicated": 0}, "offered_rate": 200, "cycles_per_s": 199.0,
                        "decision_to_release": {"p50_ms": 6.0, "p95_ms": 9.0, "p99_ms": 22.0, "max_ms": 30.0}},
            "held": {"steps": [{"counts": {"duplicated": 0}}], "max_n_answered": 10000, "rss_at_max_mb": 250.0}}},
    }


def test_summary_gives_every_figure_as_a_ratio_to_its_baseline():
    s = summarize(_fake_results())
    per = s["per_db"]["sqlite"]
    assert per["throughput"]["vs_broker_ceiling"] == 0.25 and per["throughput"]["vs_naive"] == 3.0
    assert per["latency"]["p99_vs_naive"] == 0.2 and per["latency"]["target_met"] is True
    assert per["held"]["vs_naive"] == 10.0 and per["held"]["target_met"] is True
    assert per["throughput"]["target_met"] is False
    assert s["totals"] == {"lost": 0, "duplicated": 0}


def test_table_renders_without_missing_scenarios():
    results = _fake_results()
    results["summary"] = summarize(results)
    text = table(results)
    assert "cycles/s (best config)" in text and "× broker ceiling" in text
