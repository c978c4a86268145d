"""Recommend stage: the :class:`Recommender` protocol, the registry and the models.

Importing this package registers every built-in model under its config name (``MODELS``); installed
packages add theirs through the ``mosaicrec.models`` entry points (:mod:`mosaicrec.registry`)."""

from mosaicrec.models.base import BaseRecommender, ModelConfig, Recommender
from mosaicrec.models.content import ContentKNN
from mosaicrec.models.context import ScenarioBPR, ScenarioPop
from mosaicrec.models.ease import EASE, ContentEASE
from mosaicrec.models.itemknn import ItemKNN
from mosaicrec.models.mapping import ContentMap
from mosaicrec.models.mf import ALS, BPR, BiasedMF
from mosaicrec.models.neural import VBPR, GraphModel, Hybrid, MultiTask, SASRec, TwoTower
from mosaicrec.models.per_context import PerContext
from mosaicrec.models.popularity import MostPopular
from mosaicrec.models.query import Query
from mosaicrec.models.registry import MODELS, ModelSpec, create, load_model, register

__all__ = ["ALS", "BPR", "ContentEASE", "ContentMap", "ContentKNN", "EASE", "GraphModel", "Hybrid", "MultiTask",
           "PerContext", "SASRec", "TwoTower", "VBPR", "MODELS", "BaseRecommender", "BiasedMF", "ItemKNN",
           "ModelConfig", "ModelSpec", "MostPopular", "Query", "Recommender", "ScenarioBPR", "ScenarioPop",
           "create", "load_model", "register"]
