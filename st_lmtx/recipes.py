"""Named recipes: presets of the :class:`LMTXArguments` settings that decide how a run trains.

Kept free of heavy imports so that the command line can list them without loading torch.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

# The choices of the recipe settings that take a name (the modules that implement them check against these).
PositivePolicy = Literal["random-yes", "top-yes", "score-weighted", "student-yes"]  # st_lmtx.pseudo_labels
POSITIVE_POLICIES: tuple[str, ...] = get_args(PositivePolicy)
CALIBRATIONS: tuple[str, ...] = ("none", "label-prior", "contextual")  # st_lmtx.calibration
WARM_STARTS: tuple[str, ...] = ("none", "rts")  # st_lmtx.rts
DEV_SOURCES: tuple[str, ...] = ("training", "held-out")  # st_lmtx.trainer.run_state.sample_documents

# The dev signals a run can stop on (computed by st_lmtx.evaluation.llm_judged_evaluator.judged_signals).
STOP_SIGNALS: tuple[str, ...] = ("llm_P@1", "llm_mean_score", "llm_top1_is_best", "llm_top1_beats_median", "llm_top1_margin")

# The settings a recipe decides; any of them given explicitly wins over the recipe.
RECIPES: dict[str, dict[str, Any]] = {
    # The reference code (xmc-aalto/LMTX): a random "yes" per use, every round from the base model, the mean
    # over the hardest in-batch negatives, 100 warmup steps, no scaling of the round to its size.
    "reference": {
        "positives": "random-yes", "accumulate_judgments": False, "restart_from_base": True,
        "softmax_weighting": False, "learning_rate": 2e-4, "warmup_steps": 100, "batch_size": 128,
        "epochs_per_round": 1, "min_steps_per_round": 0, "dev_size": 800, "patience": 1, "max_rounds": 6,
        "stop_metric": "llm_P@1", "calibration": "none", "keep_documents": 1.0, "average_rounds": False,
        "dev_source": "training",
    },
    # The best recipe measured here (BENCHMARKS.md, Reuters with the local 1.5B teacher and the oracles): the
    # teacher's most confident "yes" as the only positive, judgments kept across rounds, each round continuing
    # from the last, softmax weighting of the violating negatives, warmup as a share of the round, a round of
    # any size trains at least ``min_steps_per_round`` steps, and the stop rule asks how far the teacher prefers
    # the model's top-1 to the rest of its top-k (a lenient teacher's "yes" to everything does not blind it, and
    # of the signals it ranked the rounds of the runs with a real teacher best: BENCHMARKS.md); the final model
    # is the average of the rounds' weights (better than any single round, and no noisy pick).
    "best": {
        "positives": "top-yes", "accumulate_judgments": True, "restart_from_base": False,
        "softmax_weighting": True, "learning_rate": 2e-4, "warmup_steps": 0.1, "batch_size": 128,
        "epochs_per_round": 1, "min_steps_per_round": 8, "dev_size": 800, "patience": 1, "max_rounds": 6,
        "stop_metric": "llm_top1_margin", "calibration": "none", "keep_documents": 1.0, "average_rounds": True,
        "dev_source": "training",
    },
}  # fmt: skip
DEFAULT_RECIPE = "best"
