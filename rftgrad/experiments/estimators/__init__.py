"""Experiment ``estimators``: group estimators past the paper, closed forms vs Monte Carlo, learning curves, pass@k."""
