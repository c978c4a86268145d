"""Multimodal models trained with a BPR loss in torch, scored in numpy.

* ``hybrid`` — LightFM-style: item = id embedding + fused content; user = id embedding (+ profile);
* ``vbpr`` — VBPR (He & McAuley 2016): [γ_u; θ_u]·[γ_i; E f_i] + b_i + β'·f_i;
* ``graph`` — FREEDOM-style (Zhou & Shen 2023): LightGCN over the user–item graph, plus item id embeddings
  propagated over a frozen item–item kNN graph built from content, plus projected content;
* ``sasrec`` — a causal transformer over the user's ordered history, items as ids, content or both
  (:mod:`.sequential`; trained with next-item cross-entropy, scored with torch);
* ``multitask`` — shared-bottom / MMoE / PLE / STAR over logged impressions, one head per feedback signal
  (:mod:`.multitask`; scored with torch, ranked by a blend of the heads);
* ``dropoutnet``, ``clcrec``, ``aldi`` — ALS for trained items, new items placed by a content generator
  trained as in those papers (:mod:`.cold`);
* ``two-tower`` — items from content only (any item with content scores), users from their id, the mean of
  their history's item vectors and an optional profile embedding.

Every model fuses modalities with :class:`~mosaicrec.fusion.learned.ModalityFusion` (``fusion.kind``:
concat / gated / attention), can pre-train the fusion with cross-modal InfoNCE (``pretrain_epochs``) and add
content↔collaborative InfoNCE to the loss (``align_weight``). Items without training events never get an
id embedding (it is masked to zero), so they are scored from content alone — the cold-start path.

After training, user and item vectors (and item biases) are exported as numpy arrays: saving, loading and
scoring need no torch. New users are folded in from their events (:func:`~mosaicrec.models.mf.fold_in`);
the two-tower model uses its user tower instead.
"""

from mosaicrec.models.neural.base import NeuralConfig
from mosaicrec.models.neural.cold import ALDI, CLCRec, DropoutNet
from mosaicrec.models.neural.graph import GraphConfig, GraphModel
from mosaicrec.models.neural.hybrid import Hybrid
from mosaicrec.models.neural.multitask import MultiTask, MultiTaskConfig
from mosaicrec.models.neural.sequential import SASRec, SASRecConfig
from mosaicrec.models.neural.two_tower import TwoTower, TwoTowerConfig
from mosaicrec.models.neural.vbpr import VBPR, VBPRConfig

__all__ = ["ALDI", "CLCRec", "DropoutNet", "GraphConfig", "GraphModel", "Hybrid", "MultiTask", "MultiTaskConfig", "NeuralConfig", "SASRec", "SASRecConfig", "TwoTower", "TwoTowerConfig", "VBPR", "VBPRConfig"]
