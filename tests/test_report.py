"""`hpo report`: the pure analysis (Pareto front, recommendation, trial summaries) and the page itself,
checked on a real sweep and rendered in a headless Chromium."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hpo.results.analysis import RunRecord, load_run, pareto_front, ranked_trials, summarize_trials
from hpo.results.plots import rung_survival
from hpo.results.report import importance_rung, recommend, relative_lift
from hpo.search.objective import EXACT_MATCH
from trainers.shared import EXACT_MATCH as EXACT_SCORING
from trainers.stages import STAGES

# --- the Pareto front -------------------------------------------------------------------------


def test_pareto_front_keeps_only_points_nothing_beats_on_both_axes():
    points = [(0.30, 0.10), (0.20, 0.05), (0.25, 0.20), (0.10, 0.00), (0.05, 0.01)]
    # (0.25, 0.20) is beaten by (0.30, 0.10); (0.05, 0.01) by (0.10, 0.00)
    assert pareto_front(points) == [3, 1, 0]  # by increasing regression


def test_pareto_front_keeps_ties_and_drops_non_finite_points():
    points = [(0.2, 0.1), (0.2, 0.1), (math.nan, 0.0), (0.5, math.inf), (0.1, 0.3)]
    assert pareto_front(points) == [0, 1]


def test_pareto_front_of_nothing_is_empty():
    assert pareto_front([]) == []


# --- the recommendation -----------------------------------------------------------------------


def test_a_clear_lift_within_the_limit_suggests_full_rank_or_rft():
    advice = recommend(relative_lift=0.25, general_regression=0.05, limit=0.25)
    assert advice.kind == "strong"
    assert "full-rank" in advice.advice and "RFT" in advice.advice


def test_a_lift_from_a_base_score_of_zero_reads_as_such():
    advice = recommend(relative_lift=float("inf"), general_regression=0.05, limit=0.25)
    assert advice.kind == "strong" and advice.headline.startswith("A lift from a base score of zero")
    assert "inf" not in advice.headline


def test_the_next_step_after_a_clear_win_depends_on_the_stage():
    assert "continued pre-training" in recommend(0.3, 0.0, 0.25, stage=STAGES["cpt"]).advice
    assert "longer RFT run" in recommend(0.3, 0.0, 0.25, stage=STAGES["rft"]).advice


def test_regression_over_the_limit_suggests_more_general_data_or_a_lower_learning_rate():
    advice = recommend(relative_lift=0.40, general_regression=0.60, limit=0.25)
    assert advice.kind == "over-limit"
    assert "general data" in advice.advice and "learning rate" in advice.advice


def test_no_lift_points_at_the_data_first():
    advice = recommend(relative_lift=-0.02, general_regression=0.0, limit=0.25)
    assert advice.kind == "no-lift" and "data" in advice.advice


def test_a_small_lift_asks_for_more_data_before_a_costlier_run():
    advice = recommend(relative_lift=0.05, general_regression=0.01, limit=None)
    assert advice.kind == "modest" and "full-rank" in advice.advice


def test_many_failing_trials_add_a_caution_to_any_advice():
    calm = recommend(0.25, 0.05, 0.25, failing_share=0.1)
    worried = recommend(0.25, 0.05, 0.25, failing_share=0.6)
    assert "regression limit" not in calm.advice and "60% of the trials" in worried.advice


def test_relative_lift_per_stage():
    assert relative_lift(0.9, 0.6, EXACT_MATCH) == pytest.approx(0.5)  # exact match 0.6 -> 0.9
    assert relative_lift(5.0, 10.0, STAGES["cpt"].domain_metric(EXACT_SCORING)) == pytest.approx(0.5)  # perplexity halves
    assert relative_lift(0.5, 0.0, EXACT_MATCH) == math.inf  # from nothing, any gain is a full gain
    assert relative_lift(-0.5, -1.0, STAGES["rft"].domain_metric(EXACT_SCORING)) == pytest.approx(0.5)  # a negative base reward


# --- trials, rungs, importance ------------------------------------------------------------------


def rung(trial: str, step: int, objective: float, at: float, status: str = "stopped", **extra) -> dict:
    return {"trial_id": trial, "step": step, "objective": objective, "recorded_at": at, "status": status, **extra}


def test_trials_are_numbered_in_start_order_with_their_best_rung():
    rows = [
        rung("b", 4, 0.1, at=2.0, param_x=2),
        rung("a", 4, 0.2, at=1.0, status="completed", param_x=1),
        rung("a", 8, 0.5, at=3.0, status="completed", param_x=1),
        rung("a", 12, 0.5, at=4.0, status="completed", param_x=1),
    ]
    first, second = summarize_trials(rows)
    assert (first.number, first.trial_id, second.trial_id) == (1, "a", "b")
    assert first.best["step"] == 8  # the earliest of two equal best rungs: less compute
    assert first.last_step == 12 and first.status == "completed" and first.params == {"x": 1}


def test_a_zero_objective_ranks_above_a_negative_one():
    rows = [rung("b", 4, -0.5, at=1.0), rung("a", 4, 0.0, at=2.0), rung("c", 4, None, at=3.0)]
    record = RunRecord(Path("run"), {}, {}, tuple(rows), tuple(summarize_trials(rows)), None, None)
    assert [t.trial_id for t in ranked_trials(record)] == ["a", "b", "c"]


def test_importance_compares_trials_at_the_highest_rung_enough_of_them_reached():
    assert importance_rung([[4, 8, 12], [4, 8], [4, 8], [4]], minimum=3) == 8
    assert importance_rung([[4], [4]], minimum=3) is None


# --- the report of a real sweep -----------------------------------------------------------------

PLOTS = {"objective_vs_compute", "lift_vs_regression", "parallel_coordinates", "importance", "rung_survival"}


@pytest.fixture(scope="module")
def report(tiny_run):
    done = subprocess.run([sys.executable, "-m", "hpo", "report", str(tiny_run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return tiny_run / "report", done.stdout


def test_report_writes_a_self_contained_page_plots_and_a_summary(report, tiny_run):
    folder, stdout = report
    assert f"report:  {folder / 'index.html'}" in stdout
    page = (folder / "index.html").read_text()
    for name in (*PLOTS, "confusion"):
        assert (folder / f"{name}.png").stat().st_size > 5_000, name
    images = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,", page)
    assert len(images) == len(PLOTS) + 1  # every plot inline, the confusion matrix too
    assert not re.search(r"(src|href)=['\"](https?:|//)", page)  # nothing fetched: opens offline
    summary = (folder / "summary.md").read_text()
    rows = pq.read_table(tiny_run / "trials.parquet").to_pylist()
    best = max(rows, key=lambda r: r["objective"])
    assert best["trial_id"] in summary and "## Recommendation" in summary
    assert "| domain_exact_match |" in summary  # the baseline and the best recipe's scores
    assert "best (test, 20)" in summary  # the held-out test split
    assert f"optuna-dashboard {tiny_run / 'study.journal'}" in summary
    assert all(f"({name}.png)" in summary for name in PLOTS)
    assert "## Trial time" in summary and "engine overhead" in summary
    for trial_id in {row["trial_id"] for row in rows}:  # every trial trained, so each has a time row
        assert re.search(rf"\| {trial_id} \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| -?[0-9.]+ \| -?[0-9.]+% \|", summary)


def test_survival_counts_every_trial_at_the_first_rung(tiny_run):
    record = load_run(tiny_run)
    survival = rung_survival(record)
    assert survival[0] == (4, len(record.trials))
    assert [n for _, n in survival] == sorted((n for _, n in survival), reverse=True)  # ASHA only ever cuts


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (CI: apt-get install chromium)")
def test_the_page_renders_with_its_plots_in_a_headless_browser(report, tmp_path):
    from PIL import Image

    page = (report[0] / "index.html").resolve()
    common = [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", dom.stdout)) == len(PLOTS) + 1
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB").resize((320, 1000))
    pixels = list(image.getdata())
    colours = len(set(pixels))
    inked = sum(1 for p in pixels if sum(p) < 600) / len(pixels)
    assert colours > 500, f"the screenshot looks blank ({colours} colours)"  # plots, not just text
    assert inked > 0.05, f"only {inked:.1%} of the page is drawn on"
