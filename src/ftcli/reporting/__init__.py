"""Run reports: report.html and loss.png from what a run directory holds (`ftcli report`); no training imports."""
