"""benchmarks/bench_table.py turns bench_model_step.py's JSON into the README table."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from bench_table import markdown  # noqa: E402


def test_table_names_every_section() -> None:
    stage = {"p50": 10.0, "p95": 12.0}
    result = {
        "stages": {"reference": {"query": {"p50": 80.0, "p95": 90.0}}, "fast": {"query": stage}},
        "closed_loop_steps": 5,
        "closed_loop_mismatched_steps": 1,
        "query_tokens_equal": True,
        "closed_loop_track_gap_px": 0.25,
        "reference_tracker_options": {"incremental": False},
        "tracker_variants": {"fast": {"options": {"amp": "bf16"}, **stage}},
        "batched_numerics": {"fast": {"tokens_differing": 2, "max_prob_gap": 0.0039}},
    }
    text = markdown(result)
    assert "| query | 80.0 | 90.0 | 10.0 | 12.0 | 8.0x |" in text
    assert "closed loop 4 of 5 steps equal" in text
    assert 'Reference tracker {"incremental": false}: its tracks lie a median 0.25 px' in text
    assert '| fast | 10.0 | 12.0 | `{"amp": "bf16"}` |' in text
    assert "- fast: 2 tokens, 0.0039" in text
