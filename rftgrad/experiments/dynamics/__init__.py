"""Experiment ``dynamics``: Theorem 2's hitting times of RFT vs SFT, flow, discrete steps and correlated inputs."""
