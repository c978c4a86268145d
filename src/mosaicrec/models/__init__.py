"""Recommend stage: the :class:`Recommender` protocol, the registry and the models.

Importing this package registers every model under its config name (``MODELS``)."""

from mosaicrec.models.base import MODELS, BaseRecommender, ModelConfig, Recommender, create, register
from mosaicrec.models.content import ContentKNN
from mosaicrec.models.context import ScenarioBPR, ScenarioPop
from mosaicrec.models.ease import EASE, ContentEASE
from mosaicrec.models.itemknn import ItemKNN
from mosaicrec.models.mapping import ContentMap
from mosaicrec.models.mf import ALS, BPR, BiasedMF
from mosaicrec.models.neural import VBPR, GraphModel, Hybrid, MultiTask, SASRec, TwoTower
from mosaicrec.models.per_context import PerContext
from mosaicrec.models.popularity import MostPopular
from mosaicrec.models.query import Query, Ranked

load_model = BaseRecommender.load

__all__ = ["ALS", "BPR", "ContentEASE", "ContentMap", "ContentKNN", "EASE", "GraphModel", "Hybrid", "MultiTask", "PerContext", "SASRec", "TwoTower", "VBPR",
           "MODELS", "BaseRecommender", "BiasedMF", "ItemKNN", "ModelConfig",
           "MostPopular", "Query", "Ranked", "Recommender", "ScenarioBPR", "ScenarioPop", "create", "load_model", "register"]
