"""Rank stage: turning model scores into lists for people. Retrieval (exact, HNSW) with filters honoured
before the top-k, attribute filters, selection (greedy, MMR) with propensities, and explanations."""

from mosaicrec.ranking.filters import AttributeFilter
from mosaicrec.ranking.lists import Recommendation, recommend_for_user
from mosaicrec.ranking.retrieval import ExactRetriever, HNSWRetriever, Retriever, top_allowed
from mosaicrec.ranking.selection import Selection, greedy, mmr_select

__all__ = ["AttributeFilter", "ExactRetriever", "HNSWRetriever", "Recommendation", "Retriever", "Selection",
           "greedy", "mmr_select", "recommend_for_user", "top_allowed"]
