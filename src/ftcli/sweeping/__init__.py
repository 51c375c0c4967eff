"""Hyper-parameter sweeps: many normal ftcli runs of one recipe, searched by Optuna (`ftcli sweep`).

The search space and trial recipes (`space`), the study and its SQLite storage with what a restart
continues (`study`), the pruning callback (`pruning`), the ranked table, sweep_results.json and best.yaml
(`results`), the plots (`plots`), and the driver (`sweep`). Optuna loads only when a sweep runs.

May import: training and every room below it (evaluation scores each trial).
"""
