"""Reward environments: inputs, an output space (V, L), rewards in [-1, 1], targets.

See :mod:`rftgrad.envs.base` for the interface and the enumeration order.
"""

from rftgrad.envs.base import DEFAULT_MAX_OUTPUTS, OutputSpace, RewardEnv, validate_rewards
from rftgrad.envs.classification import (
    BanditEnv,
    ClassificationEnv,
    DataSplit,
    correct_label_rewards,
    digits,
    family_label,
    gaussian_clusters,
    modify_labels,
    orthonormal,
    pretraining_label_sets,
    relabel_family,
    with_label_sets,
    with_num_outputs,
)
from rftgrad.envs.language import (
    DEFAULT_COVERAGE,
    LANGUAGE_REWARDS,
    LEARNED_NOISE_WEIGHT,
    TASKS,
    LearnedReward,
    Mixture,
    keywords,
    language_env,
    pretraining_mixture,
    reference,
)
from rftgrad.envs.sequence import (
    REWARDS,
    CallableReward,
    ContainsToken,
    ExactMatch,
    PositionMatch,
    RandomRewardNetwork,
    RewardFn,
    SequenceEnv,
    TableReward,
    random_sequence_env,
)

#: name -> one-line description, for `rftgrad list`.
ENVIRONMENTS: dict[str, str] = {
    "bandit": "one input, K actions, a given reward vector (BanditEnv)",
    "orthonormal": "orthonormal inputs with +1/-1 label rewards, Theorem 2's setting (orthonormal)",
    "gaussian": "synthetic Gaussian clusters, seeded train/test split (gaussian_clusters)",
    "digits": "scikit-learn's bundled 8x8 handwritten digits, no download (digits)",
    "sequence": "prompts + whole-output rewards: " + ", ".join(REWARDS) + ", table, callable (SequenceEnv)",
}

__all__ = [
    "BanditEnv",
    "CallableReward",
    "ClassificationEnv",
    "ContainsToken",
    "DEFAULT_COVERAGE",
    "DEFAULT_MAX_OUTPUTS",
    "DataSplit",
    "ENVIRONMENTS",
    "ExactMatch",
    "LANGUAGE_REWARDS",
    "LEARNED_NOISE_WEIGHT",
    "LearnedReward",
    "Mixture",
    "OutputSpace",
    "PositionMatch",
    "REWARDS",
    "RandomRewardNetwork",
    "RewardEnv",
    "RewardFn",
    "SequenceEnv",
    "TASKS",
    "TableReward",
    "correct_label_rewards",
    "digits",
    "family_label",
    "gaussian_clusters",
    "keywords",
    "language_env",
    "modify_labels",
    "orthonormal",
    "pretraining_label_sets",
    "pretraining_mixture",
    "random_sequence_env",
    "reference",
    "relabel_family",
    "validate_rewards",
    "with_label_sets",
    "with_num_outputs",
]
