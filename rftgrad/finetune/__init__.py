"""Objectives (exact RFT, sampled estimators, SFT) and the batched trainer (Finetuning-engine issue)."""
