"""The overhead benchmark's searcher timing, on a small study (no Ray run: the CLI test covers one)."""

from benchmarks.overhead import markdown, measure_ask_tell


def test_ask_tell_timing_runs_the_real_searcher_on_a_filled_study(tmp_path):
    rows = [measure_ask_tell(30, seam, repeats=3, workdir=tmp_path) for seam in ("rung", "pruned")]
    for row in rows:
        assert row["trials"] == 30 and row["ask_ms"] > 0 and row["tell_ms"] > 0
    assert list(tmp_path.glob("ask-tell-*.journal"))  # the journal lives on disk, as in a sweep
    trial_row = {
        "trial_seconds": 1.0,
        "trials": 2,
        "stopped_early": 1,
        "wall_s": 4.0,
        "fixed_s": 1.0,
        "trainable_s": 2.5,
        "overhead_per_trial_s": 0.25,
        "overhead_share": 0.25,
    }
    table = markdown([trial_row], rows)
    assert "| 1 s | 2 | 1 |" in table and "<= 0.3 s: met" in table and "| rung | 30 |" in table
