"""bench.pipeline's report: the figures a script compares between runs (`--json`) are one JSON
object on the last line printed, with the keys it reads; records per event and the latency
phases' sizes are counted as the bench says."""
from __future__ import annotations

import json

from bench import pipeline

REQUIRED = {"ratio", "worker_us_per_event", "raw_us_per_event", "events_per_s",
            "p50_ms_half_rate", "p99_ms_half_rate", "p99_ms_quarter_rate", "records_per_event",
            "peak_rss_mb", "paced_us_per_event_half_rate"}


def phase(rate: float, p50: int, p99: int) -> dict:
    return {"events": int(rate * 10), "rate": rate, "seconds": 10.0, "with_output": 100,
            "p50_ms": p50, "p99_ms": p99, "max_ms": p99 + 10, "worker_busy": 0.5,
            "first_hop_p50_ms": p50 // 2, "first_hop_p99_ms": p99 // 2, "ack_p50_ms": 2,
            "ack_p99_ms": 9, "snapshots": 0, "cpu_per_event_us": 250.0,
            "cpu_per_event_to_commit_us": 270.0}


def figures() -> tuple[dict, dict, dict]:
    base = {"events": 30_000, "seconds": 1.5, "cpu_seconds": 1.2, "peak_rss_mb": 42.0}
    ours = {"events": 25_000, "events_in": 30_000, "inputs": 34_000, "seconds": 6.0,
            "cpu_seconds": 5.0, "peak_rss_mb": 200.0, "records_per_event": 6.5,
            "written": {"profile-inputs": 34_000, "segment-changes": 20_000, "activations": 0}}
    latency = {"half": phase(2000.0, 40, 90), "quarter": phase(1000.0, 20, 45)}
    return base, ours, latency


def test_the_summary_has_every_figure_a_script_reads():
    base, ours, latency = figures()
    summary = pipeline.summary(base, ours, latency)
    assert REQUIRED <= set(summary)
    assert summary["ratio"] == round((1.2 / 30_000) / (5.0 / 25_000), 4)  # 40 µs / 200 µs
    assert summary["worker_us_per_event"] == 200.0 and summary["raw_us_per_event"] == 40.0
    assert summary["events_per_s"] == round(25_000 / 6.0, 1)
    assert (summary["p50_ms_half_rate"], summary["p99_ms_half_rate"]) == (40, 90)
    assert summary["p99_ms_quarter_rate"] == 45
    assert summary["paced_us_per_event_half_rate"] == 250.0
    assert summary["records_per_event"] == 6.5 and summary["peak_rss_mb"] == 200.0
    json.dumps(summary)  # plain numbers only


def test_with_json_the_last_line_printed_is_the_summary(capsys):
    base, ours, latency = figures()
    pipeline.report(base, ours, latency, None, as_json=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("Kafka records per event") for line in lines)  # the table too
    assert json.loads(lines[-1]) == pipeline.summary(base, ours, latency)


def test_the_idle_workers_cpu_is_printed_and_in_the_summary(capsys):
    base, ours, latency = figures()
    pipeline.report(base, ours, latency, None, as_json=True, idle=0.0163)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "Idle: the caught-up worker with nothing to read used 1.6% of a core." in lines
    assert json.loads(lines[-1]) == {**pipeline.summary(base, ours, latency),
                                     "idle_cpu_percent": 1.63}


def test_without_json_only_the_table_is_printed(capsys):
    base, ours, latency = figures()
    pipeline.report(base, ours, latency, None)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert not last.startswith("{")


def test_records_per_event_count_what_the_worker_read_and_wrote():
    # 100 events read, 150 profile inputs written and read again, 230 other records written.
    written = {"profile-inputs": 150, "segment-changes": 80, "profiles-changelog": 150}
    assert pipeline.records_per_event(written, 100) == (100 + 150 + 380) / 100


def test_the_latency_phases_share_the_spare_events_in_proportion():
    assert pipeline.paced_counts(100_000, 2000, 20, 1000, 10) == (40_000, 10_000)
    half, quarter = pipeline.paced_counts(25_000, 2000, 20, 1000, 10)
    assert (half, quarter) == (20_000, 5_000)
