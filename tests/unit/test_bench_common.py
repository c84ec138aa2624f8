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


PER_CYCLE = {"cycles": 100, "per_process": {
    "decider": {"published": 3.0, "consumed": 2.0, "statements": 2.0, "round_trips": 2.5, "transactions": 0.25,
                "cpu_ms": 0.6},
    "ingest": {"published": 1.0, "consumed": 1.0, "statements": 0.0, "round_trips": 0.0, "transactions": 0.0,
               "cpu_ms": 0.3},
    "poller": {"published": 0.0, "consumed": 1.0, "statements": 0.0, "round_trips": 0.0, "transactions": 0.0,
               "cpu_ms": 0.2}},
    "total": {"published": 4.0, "consumed": 4.0, "statements": 2.0, "round_trips": 2.5, "transactions": 0.25,
              "cpu_ms": 1.1}}


def _fake_results() -> dict:
    run = {"counts": {"lost": 0, "duplicated": 0}, "cycles_per_s": 150.0, "ingest": 1, "decider": 1,
           "per_cycle": PER_CYCLE}
    half = {"counts": {"lost": 0, "duplicated": 0}, "offered_rate": 75.0, "cycles_per_s": 75.0, "per_cycle": PER_CYCLE,
            "decision_to_release": {"p50_ms": 5.0, "p95_ms": 8.0, "p99_ms": 60.0, "max_ms": 70.0}}
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
            "latency_half": half,
            "held": {"steps": [{"counts": {"duplicated": 0}}], "max_n_answered": 10000, "rss_at_max_mb": 190.0}}},
    }


def test_summary_gives_every_figure_as_a_ratio_to_its_baseline():
    s = summarize(_fake_results())
    per = s["per_db"]["sqlite"]
    assert per["throughput"]["vs_broker_ceiling"] == 0.25 and per["throughput"]["vs_naive"] == 3.0
    assert per["latency"]["p99_vs_naive"] == 0.2 and per["latency"]["target_met"] is True
    assert per["held"]["vs_naive"] == 10.0 and per["held"]["target_met"] is True
    assert per["throughput"]["target_met"] is False
    assert s["totals"] == {"lost": 0, "duplicated": 0}


def test_summary_gives_the_cost_of_a_cycle_and_the_latency_at_half_capacity():
    per = summarize(_fake_results())["per_db"]["sqlite"]
    costs = per["cycle_costs"]
    # The CPU target counts the decider and ingest (every replica of each), not the poller.
    assert costs["cpu_ms"] == {"decider": 0.6, "ingest": 0.3, "poller": 0.2} and costs["cpu_ms_ours"] == 0.9
    assert costs["cpu_target_met"] is True and costs["published"] == 4.0 and costs["statements"]["decider"] == 2.0
    assert per["latency_half"]["offered_rate"] == 75.0 and per["latency_half"]["target_met"] is False
    assert per["latency_half"]["p99_vs_naive"] is None  # the naive peer ran at --rate, not at half capacity
    assert per["cycle_costs_half"]["cpu_ms_ours"] == 0.9
    assert per["throughput"]["one_by_one_vs_ceiling"] == 0.25


def test_half_capacity_is_half_the_one_by_one_throughput_measured():
    from bench.scenarios import half_capacity

    runs = {"runs": [{"ingest": 2, "decider": 1, "cycles_per_s": 300.0},
                     {"ingest": 1, "decider": 1, "cycles_per_s": 250.0}]}
    assert half_capacity(runs, 99.0) == 125.0  # the 1×1 stack's, not the best config's
    assert half_capacity({"runs": runs["runs"][:1]}, 99.0) == 150.0  # no 1×1 run: the best config's
    assert half_capacity(None, 99.0) == 99.0 and half_capacity(None, None) is None


def test_the_counters_of_two_scrapes_give_figures_per_cycle():
    from bench.counters import parse_metrics, per_cycle

    before = {"decider": parse_metrics('# HELP x\nhitl_publish_confirm_seconds_count 10.0\n'
                                       'hitl_store_statements_total 100.0\n'
                                       'hitl_store_transactions_total{outcome="commit"} 4.0\n'
                                       'hitl_store_transactions_total{outcome="rollback"} 1.0\n')}
    after = {"decider": parse_metrics('hitl_publish_confirm_seconds_count 40.0\nhitl_store_statements_total 120.0\n'
                                      'hitl_store_transactions_total{outcome="commit"} 8.0\n'
                                      'hitl_store_transactions_total{outcome="rollback"} 1.0\n'),
             "poller": {}}  # scraped after the run, but did not answer: unknown, not zero
    pc = per_cycle(before, after, {"decider": 0.05}, cycles=10)
    out = pc["per_process"]["decider"]
    assert (out["published"], out["statements"], out["transactions"], out["cpu_ms"]) == (3.0, 2.0, 0.4, 5.0)
    assert out["consumed"] == 0.0
    assert pc["per_process"]["poller"] == {"published": None, "consumed": None, "statements": None,
                                           "round_trips": None, "transactions": None, "cpu_ms": None}
    assert pc["total"]["statements"] == 2.0 and pc["cycles"] == 10


def test_table_renders_without_missing_scenarios():
    results = _fake_results()
    results["summary"] = summarize(results)
    text = table(results)
    assert "cycles/s (best config)" in text and "× broker ceiling" in text
    assert "ingest×1 decider×1 cycles/s" in text and "CPU ms per cycle, decider + ingest (1×1 closed loop)" in text
    assert "decision→release p50 ms @200/s" in text and "decision→release p50 ms @half capacity" in text
    assert "  decider SQL statements / round trips / transactions" in text


def test_table_renders_results_written_before_the_counters():
    results = _fake_results()
    sqlite = results["scenarios"]["sqlite"]
    del sqlite["latency_half"], sqlite["throughput"]["runs"][0]["per_cycle"]
    results["summary"] = summarize(results)
    assert results["summary"]["per_db"]["sqlite"]["cycle_costs"] is None
    assert "CPU ms per cycle" in table(results)
