"""Experiment ``tightness``: how close can the gradient come to Theorem 1's bounds?"""
