"""The ``controlled`` experiment: RFT stalls on small-STD inputs, SFT does not (paper Section 4.2)."""
