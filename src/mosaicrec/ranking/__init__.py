"""Rank stage: turning model scores into lists for people. The one pipeline (candidates → filters → the
user's rules → selection → explanation → log) over a snapshot of model, catalog and content and the users'
live state; retrieval (exact, HNSW) with filters honoured before the top-k; selection (greedy, MMR,
bandits) with propensities; explanations; and the list value every step passes on."""

from mosaicrec.ranking.filters import AttributeFilter
from mosaicrec.ranking.lists import Entry, ItemList, Reason, Recommended
from mosaicrec.ranking.pipeline import Pipeline, Request
from mosaicrec.ranking.retrieval import ExactRetriever, HNSWRetriever, Retriever, top_allowed
from mosaicrec.ranking.selection import greedy, mmr_select

__all__ = ["AttributeFilter", "Entry", "ExactRetriever", "HNSWRetriever", "ItemList", "Pipeline", "Reason",
           "Recommended", "Request", "Retriever", "greedy", "mmr_select", "top_allowed"]
