"""The ``finetune`` experiment: RFT and SFT trained side by side with the batched trainer."""
