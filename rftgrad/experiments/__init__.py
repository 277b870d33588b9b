"""Experiments, one folder each (config.py, run.py, analysis.py); see DESIGN.md.

``EXPERIMENTS`` maps a name to a one-line description; it fills up as experiments land.
"""

EXPERIMENTS: dict[str, str] = {}
