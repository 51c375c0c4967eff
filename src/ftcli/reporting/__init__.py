"""Run reports: report.html and loss.png from what a run directory holds (`ftcli report`); no training imports.

Modules: `history` (the numbers: curves from Trainer's log history, the length histogram), `run_files`
(a run's files read once), `plots` (matplotlib pictures as PNG bytes), `html` (one run's page), `compare`
(several runs' page), `report` (the public write_report / compare_report / refresh_report). Reads run
directories only; may import runs, recipe, data; training and evaluation call it."""
