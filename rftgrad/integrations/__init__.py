"""Optional bridges between rftgrad and training libraries; nothing here is imported by ``import rftgrad``.

* :mod:`rftgrad.integrations.trl`: :class:`~rftgrad.integrations.trl.GroupMonitor`, a TRL
  ``GRPOTrainer``/``RLOOTrainer`` callback that adds the vanishing-gradient statistics of every
  generation batch to TRL's own logs and writes a per-sample rollout log for ``rftgrad diagnose``.
  Needs ``trl`` (and so ``transformers``), which rftgrad does not depend on. See docs/trl.md.

Import the submodule itself (``from rftgrad.integrations.trl import GroupMonitor``); this package
imports nothing heavy.
"""
