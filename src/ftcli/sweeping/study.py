"""The Optuna study behind a sweep: SQLite storage at `<output_dir>/sweep.db`, a TPE sampler seeded by
sweep.seed, the median pruner, and what a restarted sweep picks up (trials a killed process left RUNNING)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ftcli.errors import UserError
from ftcli.recipe.sweep_section import SweepSection

DB_FILE = "sweep.db"
TRIALS_DIR = "trials"
STUDY_NAME = "ftcli-sweep"
# What a sweep searches; a rerun against a sweep.db that searched something else would mix two searches.
_SPACE_ATTR = "ftcli_space"


def import_optuna():
    """Optuna, with its INFO lines (one per trial) silenced: the sweep says what happens itself."""
    try:
        import optuna
    except ImportError:
        raise UserError("ftcli sweep needs Optuna, which is not installed",
                        hint="pip install 'ftcli[sweep]'") from None
    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


def trial_dir(sweep_dir: Path, number: int) -> Path:
    """trials/001 for Optuna's trial 0: the folder a trial's normal ftcli run writes."""
    return Path(sweep_dir) / TRIALS_DIR / f"{number + 1:03d}"


def _space(sweep: SweepSection) -> str:
    return json.dumps({"parameters": {k: v.model_dump(mode="json") for k, v in sweep.parameters.items()},
                       "objective": sweep.objective, "direction": sweep.direction}, sort_keys=True)


def open_study(sweep_dir: Path, sweep: SweepSection):
    """The sweep's study, created on the first run and loaded on later ones (same search only)."""
    optuna = import_optuna()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    db = sweep_dir / DB_FILE
    pruner = optuna.pruners.MedianPruner(n_startup_trials=sweep.pruning_startup_trials) if sweep.pruning \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=STUDY_NAME, storage=f"sqlite:///{db}", load_if_exists=True,
                                direction=sweep.direction, sampler=optuna.samplers.TPESampler(seed=sweep.seed),
                                pruner=pruner)
    space = study.user_attrs.get(_SPACE_ATTR)
    if space is None:
        study.set_user_attr(_SPACE_ATTR, _space(sweep))
    elif space != _space(sweep):
        raise UserError(f"{db} holds a sweep of other parameters, objective or direction than this recipe's",
                        hint="restore the recipe's sweep: section to continue that sweep, or set train.output_dir "
                             "to a new folder (only sweep.trials may change between runs)")
    return study


def counted(study) -> list:
    """The trials that count towards sweep.trials: all but those only queued (enqueue_trial) and not started."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]


def unfinished(study) -> list:
    """Trials a killed or stopped sweep left RUNNING: continued with the same params and folder."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def resumed_trial(study, frozen):
    """A live Trial for a RUNNING trial of an earlier process, to report its intermediate evals to."""
    from optuna.trial import Trial

    return Trial(study, frozen._trial_id)
