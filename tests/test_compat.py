"""hpo.compat against the installed Ray and Optuna: each private use still works, or the test
names the version that broke it and the function to fix."""

import importlib.util
from pathlib import Path

import optuna
import ray
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray import tune

from hpo.compat import TOKEN_AUTH_LOGGER, replace_tuner_settings, running_trial


def broken(library: str, version: str, name: str, what: str) -> str:
    return f"{library} {version}: hpo.compat.{name} no longer works ({what}); fix it for this version"


def test_a_restored_tuner_takes_new_settings(tmp_path):
    tuner = tune.Tuner(lambda config: None, run_config=tune.RunConfig(name="old", storage_path=str(tmp_path)))
    settings = tune.TuneConfig(num_samples=3)
    run_settings = tune.RunConfig(name="new", storage_path=str(tmp_path))
    try:
        replace_tuner_settings(tuner, settings, run_settings)
        internal = tuner._local_tuner
        replaced = internal._tune_config is settings and internal.get_run_config() is run_settings
    except AttributeError as err:
        raise AssertionError(broken("Ray", ray.__version__, "replace_tuner_settings", repr(err))) from err
    assert replaced, broken("Ray", ray.__version__, "replace_tuner_settings", "the settings a Tuner runs moved")


def test_a_running_trial_is_found_by_its_number_and_takes_reports(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.ask()
    number = study.ask().number
    try:
        trial = running_trial(study, number)
        trial.report(0.5, 2)
    except (AttributeError, KeyError) as err:
        raise AssertionError(broken("Optuna", optuna.__version__, "running_trial", repr(err))) from err
    study.tell(number, 0.6)
    found = trial.number == number and study.trials[number].intermediate_values == {2: 0.5}
    assert found, broken("Optuna", optuna.__version__, "running_trial", "it returned another trial")


def test_rays_token_notice_comes_from_the_named_logger():
    spec = importlib.util.find_spec(TOKEN_AUTH_LOGGER)
    assert spec is not None and spec.origin, broken("Ray", ray.__version__, "TOKEN_AUTH_LOGGER", "no such module")
    notice = "Token authentication is enabled for this Ray cluster"  # what hpo.sweep.drop_token_auth_notice drops
    assert notice in Path(spec.origin).read_text(), broken(
        "Ray", ray.__version__, "TOKEN_AUTH_LOGGER", "the module no longer logs the notice"
    )
