"""Hyper-parameter sweeps: many normal ftcli runs of one recipe, searched by Optuna (`ftcli sweep`)."""
