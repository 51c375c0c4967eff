"""`ftcli sweep`: trials of one recipe, each a normal ftcli run in `<output_dir>/trials/NNN/`, searched by
Optuna's ask-and-tell interface so that a killed sweep resumes with the same command: finished trials
stay, the trial left RUNNING continues (same values, same folder, its latest checkpoint), and the sweep
runs exactly `sweep.trials` trials in all."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

from ftcli import runs
from ftcli.errors import Interrupted, TrainingFailed, UserError, first_line
from ftcli.progress import log
from ftcli.recipe import Recipe, load_recipe
from ftcli.recipe.sweep_section import SweepSection
from ftcli.sweeping import results as outputs
from ftcli.sweeping.plots import PLOT_FILE, write_plot
from ftcli.sweeping.space import base_raw, check_values, distributions, recipe_values, trial_recipe
from ftcli.sweeping.study import (DB_FILE, TRIALS_DIR, counted, import_optuna, open_study, resumed_trial,
                                  trial_dir, unfinished)


def sweep(recipe: Recipe | str | Path, overrides: list[str] | None = None) -> outputs.SweepResult:
    """Run (or resume, or extend) the recipe's sweep; returns the ranked trials and the files written."""
    import_optuna()  # missing: one clear error before anything loads
    source = str(recipe) if isinstance(recipe, (str, Path)) else "recipe"
    loaded = load_recipe(recipe, overrides) if isinstance(recipe, (str, Path)) else recipe
    spec = loaded.sweep
    if spec is None:
        raise UserError(f"{source} has no sweep: section", hint="add sweep: {parameters: ..., trials: N} "
                        "(see `ftcli schema`), or train it with `ftcli finetune`")
    if loaded.data.eval is None and not loaded.data.eval_fraction:
        raise UserError(f"{source}: a sweep scores each trial on eval data, and this recipe has none",
                        hint="set data.eval, or data.eval_fraction above 0")
    sweep_dir = Path(loaded.train.output_dir)
    _check_sweep_dir(sweep_dir)
    base = base_raw(loaded)
    check_values(base, spec.parameters, trial_dir(sweep_dir, 0), source)
    study = open_study(sweep_dir, spec)
    ran = False
    for frozen in unfinished(study):  # a killed sweep's trial: same values, same folder, resumed
        _run_trial(study, resumed_trial(study, frozen), frozen.params, spec, base, sweep_dir, resumed=True)
        ran = True
    space = distributions(spec.parameters)
    while len(counted(study)) < spec.trials:
        trial = study.ask(space)
        _run_trial(study, trial, trial.params, spec, base, sweep_dir)
        ran = True
    if not ran:
        log(f"sweep in {sweep_dir} is finished ({len(counted(study))} trials); "
            "raise sweep.trials to run more")
    return _finish(study, spec, base, sweep_dir, rewrite=ran)


def _check_sweep_dir(sweep_dir: Path) -> None:
    """Write a sweep only into a new folder, or one a sweep (or a run) already wrote."""
    resolved = sweep_dir.expanduser().resolve()
    if special := runs.special_place(resolved):
        raise UserError(f"train.output_dir is {special} ({resolved}); refusing to write a sweep there",
                        hint="use a folder of its own, such as runs/NAME-sweep")
    if resolved.exists() and not resolved.is_dir():
        raise UserError(f"train.output_dir {resolved} is a file, not a folder")
    ours = (resolved / DB_FILE).is_file() or (resolved / TRIALS_DIR).is_dir()
    if resolved.is_dir() and any(resolved.iterdir()) and not ours and not runs.looks_like_run(resolved):
        raise UserError(f"train.output_dir {resolved} already holds files that are not an ftcli sweep; "
                        "refusing to write into it", hint="choose an empty or new folder")


def _run_trial(study, trial, params: dict, spec: SweepSection, base: dict, sweep_dir: Path,
               resumed: bool = False) -> None:
    from optuna.trial import TrialState

    from ftcli.sweeping.pruning import PRUNED_AT, PruningCallback
    from ftcli.training.finetune import finetune

    number, name = trial.number, f"{trial.number + 1:03d}"
    folder = trial_dir(sweep_dir, number)
    values = recipe_values(spec.parameters, params)
    recipe = trial_recipe(base, values, folder, spec.objective, source=f"sweep trial {name}")
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    log(f"trial {name} of {spec.trials:03d}{' (continuing)' if resumed else ''}: {shown}")
    pruning = PruningCallback(trial, spec.objective, log) if spec.pruning else None
    if not runs.is_finished(folder):  # a killed trial may have finished training before its eval
        try:
            finetune(recipe, callbacks=[pruning] if pruning else [])
        except TrainingFailed as exc:  # nonfinite loss and the like: this trial's values, not the sweep's
            study.tell(number, state=TrialState.FAIL)
            log(f"trial {name} failed: {first_line(exc)}")
            return
        except Interrupted as exc:  # the trial stays RUNNING in the study: the rerun continues it
            raise Interrupted(f"sweep trial {name}: {exc.message}",
                              hint="run the same `ftcli sweep` command again to continue this trial from there") \
                from None
    if trial.user_attrs.get(PRUNED_AT) is not None:
        study.tell(number, state=TrialState.PRUNED)
        log(f"trial {name} pruned at step {trial.user_attrs[PRUNED_AT]}")
        return
    value = _objective(folder, spec.objective)
    if not math.isfinite(value):
        study.tell(number, state=TrialState.FAIL)
        log(f"trial {name} failed: {spec.objective} is {value}")
        return
    study.tell(number, value)
    log(f"trial {name}: {spec.objective} {value:.4g}")


def _objective(run_dir: Path, objective: str) -> float:
    """The trial's objective on its eval data, as `ftcli eval` measures it (saved in its eval_results.json)."""
    from ftcli.evaluation.evaluate import evaluate_run

    metrics = evaluate_run(run_dir, base=False)["tuned"]
    if objective not in metrics:
        raise UserError(f"{run_dir}: ftcli eval reported no {objective} (it reported {', '.join(metrics)})")
    return float(metrics[objective])


def _finish(study, spec: SweepSection, base: dict, sweep_dir: Path, rewrite: bool) -> outputs.SweepResult:
    ranked = outputs.rows(study, partial(recipe_values, spec.parameters), partial(trial_dir, sweep_dir))
    best = next((r for r in ranked if r.state == "COMPLETE"), None)
    result = outputs.SweepResult(sweep_dir, spec.objective, spec.direction, ranked, best)
    best_yaml, plot, json_file = sweep_dir / outputs.BEST_FILE, sweep_dir / PLOT_FILE, sweep_dir / outputs.RESULTS_FILE
    if rewrite or not json_file.is_file():
        result.best_yaml = outputs.write_best(sweep_dir, base, best) if best else None
        log_keys = {k for k, p in spec.parameters.items() if p.log}
        try:
            result.plot = write_plot(plot, result, log_keys)
        except Exception as exc:  # noqa: BLE001 - a plot must never cost the sweep's results
            log(f"warning: could not draw {plot.name}: {first_line(exc)}")
        outputs.write_results(result)
    else:
        result.best_yaml = best_yaml if best_yaml.is_file() else None
        result.plot = plot if plot.is_file() else None
    result.files = {"study": str(sweep_dir / DB_FILE), "results": str(json_file),
                    **({"best": str(result.best_yaml)} if result.best_yaml else {}),
                    **({"plot": str(result.plot)} if result.plot else {})}
    return result
