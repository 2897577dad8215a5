"""`hpo`: validate a sweep file, run a sweep (or a pipeline of stages), resume one, export the best recipe,
write a report, judge a model or answers.

Exit codes, for `hpo sweep` and `hpo resume` alike (README.md, "Exit codes"):

    0        the budget finished and a passing best recipe was written
    1        the sweep ran, but no trial passed (the counts by reason are printed; no best recipe);
             or, with --require-learned, the best recipe's verdict is not "learned" on the test
             split with general ability held
    2        bad input: every problem on its own `error:` line, before anything started or was written
    3        a passing best recipe was written, but trials of the budget ended in error (each on its own
             line with its reason) or never ran
    130/143  interrupted by SIGINT/SIGTERM: trials stopped cleanly, `hpo resume RUN_DIR` finishes it

`hpo judge` exits 0 when the candidate learned the task with general ability held, 1 when not,
2 on bad input (hpo.judge.command).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.config.errors import EXIT_BAD_INPUT, EXIT_NO_PASSING, EXIT_NOT_LEARNED, EXIT_TRIAL_ERRORS, InputError, Problems
from hpo.config.reader import load_yaml
from hpo.results.rundir import RunDir, Status, SweepState
from hpo.run.interrupt import Interrupted, StopSignals, exit_code
from hpo.run.timing import PHASES
from trainers.model_store import ModelError
from trainers.stages import domain_metric

if TYPE_CHECKING:
    from ray.tune import Callback

    from hpo.config.sweep_file import SweepConfig
    from hpo.run.sweep import Outcome

log = logging.getLogger("hpo")
SIGNALS = StopSignals()  # installed by main(): SIGINT and SIGTERM stop a sweep cleanly


def is_pipeline(path: Path) -> bool:
    """Whether a sweep file lists `stages`. Read here rather than with hpo.run.pipeline, whose Ray
    import would take a second or two before a bad file is refused."""
    document = load_yaml(path, Problems(path))
    return isinstance(document, dict) and "stages" in document


def cmd_validate(args: argparse.Namespace) -> int:
    from hpo.config.sweep_file import load_sweep

    if is_pipeline(args.sweep):
        from hpo.config.pipeline_file import load_pipeline

        configs = load_pipeline(args.sweep).stages
    else:
        configs = (load_sweep(args.sweep, quick=args.quick),)
    from hpo.config.describe import describe
    from hpo.config.splits import split_summary
    from hpo.run.resources import machine_problems

    for config in configs:
        print(
            f"ok: {args.sweep}: {config.recipe.stage}/{config.recipe.method}, "
            f"{len(config.space.parameters)} parameters from {config.space.path}, "
            f"{config.budget.trials} trials x up to {config.scheduler.max_steps} steps"
        )
        for line in split_summary(dataclasses.asdict(config.recipe.data), config.recipe.labels):
            print(f"  {line}")
        for line in describe(config):
            print(f"  {line}")
        for line in input_warnings(config):
            print(f"warning: {line}")
        for line in machine_problems(config):  # the same file may be meant for a Ray cluster
            print(f"warning: {line}; `hpo sweep` here refuses it")
    return 0


def print_metrics(title: str, metrics: dict) -> None:
    from hpo.judge.outcome import format_metrics

    print(format_metrics(title, metrics), flush=True)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from hpo.config.pipeline_file import load_pipeline
    from hpo.run.pipeline import run_pipeline

    pipeline = load_pipeline(args.sweep)  # every stage's input problems surface here, before any side effect
    if args.require_learned:
        raise InputError(
            [
                f"{args.sweep}: --require-learned: a pipeline's stages end without a held-out verdict "
                "(drop the flag, and gate on `hpo judge STAGE_RUN` of its last stage)"
            ]
        )
    refuse_ray_client()
    for config in pipeline.stages:
        refuse_unmet_resources(config)

    def live(config):
        return None if args.quiet else live_view(config)

    say = lambda line: print(line, flush=True)  # noqa: E731
    run_dir, outcome = run_pipeline(pipeline, args.allow_low_reward, say, live, SIGNALS)
    from hpo.run.timing import PHASES, trial_times, where_the_time_went

    stages = [RunDir(run_dir).stage(config.recipe.stage) for config in pipeline.stages]
    times = trial_times(row for stage in stages if stage.trials.is_file() for row in stage.read_rows())
    print("\n".join(where_the_time_went(PHASES, times, max(c.budget.concurrency for c in pipeline.stages))))
    print(f"run directory: {run_dir}")
    if outcome.passed:
        print(f"chain:         {RunDir(run_dir).chain}")
    return conclusion(outcome)


def input_warnings(config: SweepConfig) -> list[str]:
    """What `hpo validate` and `hpo sweep` warn of in a valid sweep file: probes larger than their files,
    trials that would not fit in memory, rows shared between splits."""
    from hpo.config.splits import split_warnings
    from hpo.config.sweep_file import probe_shortfalls
    from hpo.run.memory import memory_warnings

    return probe_shortfalls(config) + memory_warnings(config) + split_warnings(config.path, config.recipe)


def cmd_sweep(args: argparse.Namespace) -> int:
    from hpo.config.sweep_file import load_sweep

    if is_pipeline(args.sweep):
        return cmd_pipeline(args)
    config = load_sweep(args.sweep, quick=args.quick)  # every input problem surfaces here, before any side effect
    refuse_ray_client()
    refuse_unmet_resources(config)
    for line in input_warnings(config):
        print(f"warning: {line}", flush=True)
    from hpo.run.baseline import measure_baseline
    from hpo.run.pipeline import check_start
    from hpo.run.resources import require_resources
    from hpo.run.sweep import prepare, run_sweep, start_ray, trial_recipe

    print(f"measuring the base model {config.recipe.model} on the probes ...", flush=True)
    baseline = measure_baseline(trial_recipe(config))
    print_metrics("baseline", baseline["metrics"])
    for line in check_start(config, baseline["metrics"], args.allow_low_reward):  # refuses with exit code 2
        print(f"warning: {line}", flush=True)
    if args.baseline_only:
        return 0
    start_ray(config)
    require_resources(config, lambda line: print(line, flush=True))  # refuses with exit code 2
    run_dir, baseline = prepare(config, baseline)
    args.started_run = run_dir  # an interrupt from here on leaves something to resume
    live = None if args.quiet else live_view(config)
    outcome = run_sweep(config, run_dir, baseline, live, SIGNALS)
    return conclude(config, outcome, args.require_learned)


def cmd_resume(args: argparse.Namespace) -> int:
    from hpo.run.resume import load_resumable

    RunDir(args.run_dir).require()
    refuse_ray_client()  # resuming reads the run's record and checkpoints here
    config = load_resumable(args.run_dir, args.sweep_file)  # refuses a changed sweep before any side effect
    refuse_unmet_resources(config)
    from hpo.run.resources import require_resources
    from hpo.run.sweep import resume_sweep, start_ray

    print(f"resuming {args.run_dir} ...", flush=True)
    args.started_run = args.run_dir  # an interrupt from here on leaves it as it was: still to resume
    start_ray(config)
    require_resources(config, lambda line: print(line, flush=True))
    live = None if args.quiet else live_view(config)
    outcome = resume_sweep(config, args.run_dir, live, SIGNALS)
    return conclude(config, outcome, args.require_learned)


def live_view(config: SweepConfig) -> Callback:
    from hpo.run.live import LiveView

    return LiveView(config.budget.trials, config.scheduler.max_steps, domain_metric=domain_metric(config.recipe).name)


def refuse_ray_client() -> None:
    """A Ray Client address (ray://) runs the driver's record-keeping remotely: refused before anything starts."""
    address = os.environ.get("RAY_ADDRESS", "")
    if address.startswith("ray://"):
        from hpo.run.sweep import ray_client_refusal

        raise InputError([ray_client_refusal(address)])


def refuse_unmet_resources(config: SweepConfig) -> None:
    """A trial this machine cannot give its resources to, with embedded Ray: refused before the baseline."""
    from hpo.run.resources import machine_problems

    if problems := machine_problems(config):
        raise InputError(problems)


def conclude(config: SweepConfig, outcome: Outcome, require_learned: bool = False) -> int:
    """Say how the sweep ended and return its exit code; only a passing best gets the full outcome.

    With `require_learned`, a best whose verdict does not pass (not learned on the test split, or
    general ability regressed) exits EXIT_NOT_LEARNED."""
    verdict = print_outcome(config, outcome.run_dir) if outcome.passed else None
    if not outcome.passed:
        print_time(config, outcome.run_dir)
    code = conclusion(outcome)
    if code == 0 and require_learned and not (verdict or {}).get("passed"):
        print(f"--require-learned: {not_passed_line(verdict)}", file=sys.stderr, flush=True)
        return EXIT_NOT_LEARNED
    return code


def not_passed_line(verdict: dict | None) -> str:
    if verdict is None:
        return "no verdict: the best recipe has no adapter to judge"
    if verdict["general"] == "regressed":
        return verdict["general_line"]
    return verdict["headline"]


def conclusion(outcome: Outcome) -> int:
    from hpo.results.best_recipe import no_passing_line

    if outcome.signal is not None:
        print(interrupted_line(outcome.run_dir, outcome.ended, outcome.budget), file=sys.stderr, flush=True)
        return exit_code(outcome.signal)
    if outcome.failures:
        print(no_passing_line(outcome.failures), file=sys.stderr, flush=True)
        return EXIT_NO_PASSING
    if outcome.errors or outcome.missing:
        print("\n".join(trial_error_lines(outcome)), file=sys.stderr, flush=True)
        return EXIT_TRIAL_ERRORS
    return 0


def trial_error_lines(outcome: Outcome) -> list[str]:
    """What a sweep that wrote a best recipe says about the trials of its budget that did not run their course."""
    ran = outcome.budget - outcome.missing - len(outcome.errors)
    lines = [f"trial {number} ended in error: {reason}" for number, reason in outcome.errors]
    if outcome.missing:
        lines.append(f"{outcome.missing} of the budget's {outcome.budget} trials never ran")
    lines.append(f"the best recipe is the best of the {ran} trials that did not fail ({outcome.budget} in the budget)")
    return lines


def interrupted_line(run_dir: Path | None, ended: int | None = None, budget: int | None = None) -> str:
    if run_dir is None:
        return "interrupted before the sweep started: nothing was written (run the same command again)"
    if ended is None or budget is None:
        ended, budget = recorded_progress(RunDir(run_dir))
    return f"interrupted: {ended} of {budget} trials ended; finish with `hpo resume {run_dir}`"


def recorded_progress(run: RunDir) -> tuple[int, int]:
    """(trials ended, the budget) from a run directory's record, for an interrupt outside Ray Tune's loop."""
    budget = run.read_spec()["config"]["budget"]["trials"] if run.spec.is_file() else 0
    rows = run.read_rows() if run.trials.is_file() else []
    return len({row["trial_id"] for row in rows if row["status"] != Status.RUNNING}), budget


def stopped(args: argparse.Namespace, signum: int) -> int:
    """An interrupt outside Ray Tune's loop: the run directory, if one was made, is left to `hpo resume`."""
    run_dir = getattr(args, "started_run", None)
    if run_dir is not None and RunDir(run_dir).read_state() != SweepState.FINISHED:
        RunDir(run_dir).write_state(SweepState.INTERRUPTED, signal=signum)
    print(interrupted_line(run_dir), file=sys.stderr, flush=True)
    return exit_code(signum)


def print_outcome(config: SweepConfig, run_dir: Path) -> dict | None:
    """The best rung's validation scores, its service flags, the held-out check and its verdict (returned)."""
    from hpo.judge.evaluate import evaluate_best, format_confusion
    from hpo.judge.outcome import held_out_lines

    run = RunDir(run_dir)
    exported = run.read_recipe_document()
    print_metrics("best (validation)", exported["expected"])
    for flag in exported.get("service_flags", []):
        print(f"service: {flag}")
    scores = evaluate_best(run_dir)
    if scores:
        print("\n".join(held_out_lines(scores)))
    if scores.get("confusion"):
        print(format_confusion(scores["confusion"]))
    print_time(config, run_dir)
    print(f"run directory: {run_dir}")
    print(f"best recipe:   {run.recipe}")
    return scores.get("verdict")


def print_time(config: SweepConfig, run_dir: Path) -> None:
    """The trials' time line, then where the command's time went, phase by phase (hpo.run.timing)."""
    from hpo.run.timing import PHASES, time_summary, trial_times, where_the_time_went

    run = RunDir(run_dir)
    times = trial_times(run.read_rows() if run.trials.is_file() else [])
    print(time_summary(times))
    print("\n".join(where_the_time_went(PHASES, times, config.budget.concurrency)))


def cmd_export(args: argparse.Namespace) -> int:
    from hpo.results.best_recipe import NoPassingTrial, export_best, is_partial
    from hpo.results.rundir import partial_line

    run = RunDir(args.run_dir)
    run.require(run.spec.name)
    try:
        recipe = export_best(args.run_dir, service_compatible=args.service_compatible or None)
    except NoPassingTrial as err:
        print(err, file=sys.stderr)
        return EXIT_NO_PASSING
    print(recipe)
    if is_partial(run):
        print(f"warning: {partial_line(run)}", file=sys.stderr)
    from hpo.results.tool_configs import service_warnings

    for line in service_warnings(recipe.parent):  # TRL/PEFT/service exports sit next to the recipe
        print(f"warning: {line}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from hpo.results.report import write_report

    RunDir(args.run_dir).require()
    page, summary = write_report(args.run_dir)
    print(f"report:  {page}")
    print(f"summary: {summary}")
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    from hpo.judge import command as judge

    if (args.run_dir is None) == (args.test is None):
        raise InputError(
            [
                "hpo judge: give a run directory (RUN --adapter DIR or --model PATH_OR_ID), "
                "or answers (--test FILE --base ANSWERS --candidate ANSWERS), not both"
            ]
        )
    if args.run_dir is not None:
        if args.base or args.candidate or args.labels or args.metric:
            raise InputError(["hpo judge RUN: --base, --candidate, --labels and --metric go with --test (remove them)"])
        if args.adapter is not None and args.model is not None:
            raise InputError(["hpo judge RUN: give --adapter DIR or --model PATH_OR_ID, not both"])
        scores = judge.judge_model(args.run_dir, args.adapter, args.model, args.min_lift, args.answers_out)
    else:
        if args.adapter is not None or args.model is not None or args.answers_out or not (args.base and args.candidate):
            raise InputError(
                [
                    "hpo judge --test: give --base ANSWERS and --candidate ANSWERS (no --adapter, --model or --answers-out)"
                ]
            )
        from trainers.recipe import Scoring

        metric = Scoring(scorer=args.metric or "exact_match", import_root=str(Path.cwd()))
        task = judge.AnswerTask(args.test, tuple(args.labels or ()), metric)
        scores = judge.judge_answers(task, args.base, args.candidate, args.min_lift or 0.0)
    print_judgement(scores, args.json)
    return judge.exit_code(scores)


def print_judgement(scores: dict, as_json: bool) -> None:
    import json

    from hpo.judge.evaluate import format_confusion
    from hpo.judge.outcome import held_out_lines

    if as_json:
        print(json.dumps(scores, indent=2))
        return
    print("\n".join(held_out_lines(scores)))
    if scores.get("confusion"):
        print(format_confusion(scores["confusion"]))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hpo", description="Hyperparameter optimization for LLM customization.")
    commands = top.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a sweep file; every problem at once, no side effects")
    validate.add_argument("sweep", type=Path, help="sweep YAML file")
    validate.add_argument("--quick", action="store_true", help="check the sweep with its quick: overrides applied")
    validate.set_defaults(run=cmd_validate)
    sweep = commands.add_parser("sweep", help="run a sweep (embedded Ray, or RAY_ADDRESS when set)")
    sweep.add_argument("sweep", type=Path, help="sweep YAML file")
    sweep.add_argument("--quiet", action="store_true", help="no live view (for CI logs)")
    sweep.add_argument(
        "--quick", action="store_true", help="apply the sweep file's quick: section (fewer trials and steps)"
    )
    sweep.add_argument(
        "--allow-low-reward",
        action="store_true",
        help="run RFT even when the base model's positive-reward rate is below the gate (5%%)",
    )
    sweep.add_argument(
        "--baseline-only", action="store_true", help="measure the base model and check the guardrails, then stop"
    )
    sweep.add_argument(
        "--require-learned",
        action="store_true",
        help="exit 1 unless the best recipe learned the task on the test split with general ability held",
    )
    sweep.set_defaults(run=cmd_sweep)
    resume = commands.add_parser("resume", help="finish a sweep whose driver stopped, from its checkpoints")
    resume.add_argument("run_dir", type=Path, help="run directory written by `hpo sweep`")
    resume.add_argument(
        "--sweep", type=Path, default=None, dest="sweep_file", help="the sweep file (default: the one spec.yaml names)"
    )
    resume.add_argument("--quiet", action="store_true", help="no live view (for CI logs)")
    resume.add_argument("--require-learned", action="store_true", help="as for hpo sweep")
    resume.set_defaults(run=cmd_resume)
    export = commands.add_parser("export", help="write the best recipe of a run directory")
    export.add_argument("run_dir", type=Path, help="run directory written by `hpo sweep`")
    export.add_argument(
        "--service-compatible",
        action="store_true",
        help="flag values outside the managed service's ranges (epochs 1-5, LR 1e-6..1e-4, warmup steps 0-100)",
    )
    export.set_defaults(run=cmd_export)
    report = commands.add_parser("report", help="write RUN_DIR/report/: an HTML page, PNG plots, a Markdown summary")
    report.add_argument("run_dir", type=Path, help="run directory written by `hpo sweep`")
    report.set_defaults(run=cmd_report)
    judging = commands.add_parser(
        "judge",
        help="the sweep's held-out check and verdict for any model, or for two sets of answers; "
        "exit 0 learned with general ability held, 1 not, 2 bad input",
    )
    judging.add_argument("run_dir", type=Path, nargs="?", help="run directory: its base, test split and benchmarks")
    judging.add_argument("--adapter", type=Path, help="a LoRA adapter folder to judge on the run's base model")
    judging.add_argument("--model", help="a whole model to judge (a folder or an id), with the base's tokenizer")
    judging.add_argument("--test", type=Path, help="test rows, {prompt, completion} JSONL, for judging answers")
    judging.add_argument("--base", type=Path, help="the base model's answers to the test rows, one per row")
    judging.add_argument("--candidate", type=Path, help="the candidate's answers to the test rows, one per row")
    judging.add_argument("--labels", nargs="+", help="the label set of a label task (adds the majority-class check)")
    judging.add_argument("--metric", help="the scorer (default exact_match), as task.metric names it")
    judging.add_argument(
        "--min-lift", type=float, help="the smallest lift that matters (default: the run's task.min_lift, else 0)"
    )
    judging.add_argument(
        "--answers-out", type=Path, help="with a run: write both models' answers to the test rows here, for --test"
    )
    judging.add_argument("--json", action="store_true", help="print the figures and the verdict as JSON")
    judging.set_defaults(run=cmd_judge)
    return top


def quiet_libraries() -> None:
    """Progress bars and INFO chatter from the ML libraries drown the sweep's own lines."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # inherited by trial workers too
    logging.getLogger("optuna").setLevel(logging.WARNING)
    # transformers' renames (gradient_checkpointing -> activation_checkpointing) warn on every load
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    PHASES.reset()  # where the time went is counted from here
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_libraries()
    SIGNALS.install()
    try:
        return args.run(args)
    except Interrupted as stop:
        return stopped(args, stop.signum)
    except InputError as err:
        for line in err.problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as err:  # the base model failed to load: say which file names it
        where = f"{args.sweep}: model: " if "sweep" in args else ""
        print(f"error: {where}{err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
