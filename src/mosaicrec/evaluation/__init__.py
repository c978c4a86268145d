"""Evaluate stage: metrics, the full-ranking protocol, the experiment runner and reports."""

from mosaicrec.evaluation.protocol import (EvaluationConfig, RankingResult, evaluate_ranking, evaluate_ratings,
                                           item_popularity)
from mosaicrec.evaluation.runner import ExperimentResult, run_experiment

__all__ = ["EvaluationConfig", "ExperimentResult", "RankingResult", "evaluate_ranking", "evaluate_ratings",
           "item_popularity", "run_experiment"]
