"""Experiment ``bound``: Theorem 1's bounds against the exact gradient on random policies."""
