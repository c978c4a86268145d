"""Rank stage: turning model scores into lists for people (ids, titles, filters). ANN retrieval, diversity
re-ranking and explanations land with the serving issue."""

from mosaicrec.ranking.lists import Recommendation, recommend_for_user

__all__ = ["Recommendation", "recommend_for_user"]
