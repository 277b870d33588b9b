"""Tests against the trainers rftgrad integrates with: real TRL (installed by the dev extra, so these
never skip in the README's test run) and verl (its live parity test runs only where verl is importable,
a separate environment: docs/verl.md)."""
