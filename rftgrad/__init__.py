"""rftgrad: vanishing gradients in reinforcement finetuning, verified.

Razin et al., "Vanishing Gradients in Reinforcement Finetuning of Language Models",
ICLR 2024: an input's expected policy gradient vanishes when its reward standard
deviation under the model is small. Subpackages: ``envs`` (reward environments),
``models`` (softmax policies with a replica axis), ``theory`` (exact expectations, γ,
bounds), ``finetune`` and ``experiments``.
"""

__version__ = "0.1.0"
