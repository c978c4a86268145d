"""Knowledge-graph embeddings as one more item feature.

TransE (Bordes et al. 2013), RotatE (Sun et al. 2019) or DistMult are trained on the item KG
(:mod:`mosaicrec.data.kg`) with torch-geometric's KGE models (``torch_geometric.nn.kge``: the model, its
loss with random head/tail corruption and its triple loader; the loop and the progress bar are ours).
Each catalog item's vector is its entity's embedding, so an item nobody has rated still has one: the KG is
side information, trained without any interaction, which is why it can place new items.

The vectors go through the embedding cache like any encoder's, keyed by the settings and a hash of the
triples, so a second run over the same graph reads them back instead of training again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mosaicrec.data.content import ItemContent
from mosaicrec.data.kg import ATTRIBUTE_FIELDS, KnowledgeGraph
from mosaicrec.encoders.base import l2_normalize, torch_threads
from mosaicrec.errors import MosaicError

KG_MODELS = ("transe", "rotate", "distmult")


class KGEmbeddingConfig(BaseModel):
    """The ``[content.kg]`` section: which graph, which embedding model, how long to train."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("recbole-ml100k", description="'recbole-ml100k' (the public ML-100K KG joined with the "
                        "items' own fields), 'attributes' (the fields only) or a folder with a .kg and a .link file")
    fields: list[str] = Field(list(ATTRIBUTE_FIELDS), description="item fields that become edges")
    drop_relations: list[str] = Field(default_factory=list, description="public-KG relations left out (e.g. "
                                      "those the item fields already give: film.film.actor, …)")
    model: Literal["transe", "rotate", "distmult"] = "transe"
    item_vector: Literal["entity", "neighbours", "bag"] = Field("entity", description="'entity': the item's "
        "own entity embedding; 'neighbours': the IDF-weighted mean embedding of the entities one edge away "
        "(KGAT-style propagation, one hop); 'bag': no embedding model, the TF-IDF of the entities one edge "
        "away reduced to dim by SVD")
    dim: int = Field(64, ge=2, le=1024, description="embedding width (RotatE: complex, the vector is 2 × dim)")
    epochs: int = Field(100, ge=1, le=10_000)
    batch_size: int = Field(4096, ge=16, le=1 << 20)
    lr: float = Field(0.01, gt=0, le=1)
    margin: float = Field(1.0, gt=0, description="TransE/RotatE margin")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch threads [default: all cores]")
    normalize: bool = Field(True, description="L2-normalise each item vector")

    def key(self, kg: KnowledgeGraph) -> str:
        """What the cached vectors mean: the model, its settings and the graph's triples."""
        graph = hashlib.sha256(np.ascontiguousarray(kg.triples).tobytes())
        graph.update("\n".join(map(str, kg.entities)).encode())
        settings = self.model_dump(exclude={"threads", "source", "fields", "drop_relations"})
        if self.item_vector == "bag":  # no embedding model is trained: its settings mean nothing here
            settings = {"item_vector": "bag", "dim": self.dim, "seed": self.seed, "normalize": self.normalize}
        blob = json.dumps(settings, sort_keys=True) + graph.hexdigest()
        kind = "bag" if self.item_vector == "bag" else self.model
        return f"kg-{kind}@1-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def train_kg_embeddings(kg: KnowledgeGraph, config: KGEmbeddingConfig, *, console: Console | None = None,
                        progress: bool = True) -> np.ndarray:
    """Entity embeddings ``n_entities × width`` (float32) after ``config.epochs`` epochs."""
    try:
        import torch
        from torch_geometric.nn import kge
    except ImportError as e:
        raise MosaicError("KG embeddings need torch-geometric: pip install torch-geometric "
                          "(`make setup` installs it)") from e
    if not len(kg.triples):
        raise MosaicError("the knowledge graph has no triples to train on")
    cls = {"transe": kge.TransE, "rotate": kge.RotatE, "distmult": kge.DistMult}[config.model]
    kwargs = {"margin": config.margin} if config.model in ("transe", "rotate") else {}
    threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads(config.threads))
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(config.seed)
    try:
        # sparse embeddings + SparseAdam: a batch touches a few thousand of the ~55k entities, and a dense
        # Adam step over the whole table was most of the time of an epoch
        model = cls(kg.n_entities, kg.n_relations, config.dim, sparse=True, **kwargs)
        t = torch.from_numpy(kg.triples)
        loader = model.loader(head_index=t[:, 0], rel_type=t[:, 1], tail_index=t[:, 2],
                              batch_size=config.batch_size, shuffle=True)
        opt = torch.optim.SparseAdam(list(model.parameters()), lr=config.lr)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("loss {task.fields[loss]:.4f}"), console=console, disable=not progress) as bar:
            task = bar.add_task(f"kg {config.model} ({len(kg.triples):,} triples)", total=config.epochs, loss=0.0)
            for _ in range(config.epochs):
                total, n = 0.0, 0
                for h, r, tail in loader:
                    opt.zero_grad()
                    loss = model.loss(h, r, tail)
                    loss.backward()
                    opt.step()
                    total, n = total + float(loss.detach()) * len(h), n + len(h)
                bar.update(task, advance=1, loss=total / max(n, 1))
        with torch.no_grad():
            emb = model.node_emb.weight.detach()
            if config.model == "rotate":
                emb = torch.cat([emb, model.node_emb_im.weight.detach()], dim=1)
        return emb.numpy().astype(np.float32)
    finally:
        torch.random.set_rng_state(gen_state)
        torch.set_num_threads(threads)


def neighbour_matrix(kg: KnowledgeGraph) -> sp.csr_matrix:
    """``n_items × n_entities``: 1 where an entity is one edge away from the item (either direction)."""
    row = np.full(kg.n_entities, -1, np.int64)
    row[kg.item_entity] = np.arange(len(kg.item_entity))
    h, t = kg.triples[:, 0], kg.triples[:, 2]
    rows = np.concatenate([row[h], row[t]])
    cols = np.concatenate([t, h])
    keep = rows >= 0
    a = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])),
                      shape=(len(kg.item_entity), kg.n_entities))
    a.data[:] = 1.0  # an edge in both directions counts once
    return a


def _item_vectors(kg: KnowledgeGraph, config: KGEmbeddingConfig, console: Console | None,
                  progress: bool) -> np.ndarray:
    if config.item_vector == "bag":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfTransformer

        tfidf = TfidfTransformer().fit_transform(neighbour_matrix(kg))
        dim = min(config.dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
        if dim < 1:
            raise MosaicError("the knowledge graph is too small for a bag of entities")
        return TruncatedSVD(dim, random_state=config.seed).fit_transform(tfidf).astype(np.float32)
    emb = train_kg_embeddings(kg, config, console=console, progress=progress)
    if config.item_vector == "entity":
        return emb[kg.item_entity]
    # one hop of propagation: rare neighbours (a director) weigh more than common ones (a genre)
    a = neighbour_matrix(kg)
    idf = np.log(a.shape[0] / np.maximum(np.asarray(a.sum(axis=0)).ravel(), 1.0)).astype(np.float32)
    w = a.multiply(idf[None, :]).tocsr()
    total = np.maximum(np.asarray(w.sum(axis=1)), 1e-9)
    return (np.asarray(w @ l2_normalize(emb)) / total).astype(np.float32)


def kg_item_content(kg: KnowledgeGraph, config: KGEmbeddingConfig, *, name: str = "kg", cache=None,
                    console: Console | None = None, progress: bool = True,
                    stats: dict[str, int] | None = None) -> ItemContent:
    """Each catalog item's entity embedding as the content feature ``name``; items without any edge have
    no vector (mask False). With an :class:`~mosaicrec.encoders.cache.EmbeddingCache`, vectors trained
    before on the same graph and settings are read back. ``stats`` (a dict) receives how many vectors
    came from the cache (``cached``) and how many were computed (``computed``)."""
    key = config.key(kg)
    ids = [str(i) for i in kg.item_ids]
    got = cache.get(key, ids)[0] if cache is not None else {}
    has_edges = np.zeros(len(ids), bool)
    ent_deg = kg.degree()
    has_edges[:] = ent_deg[kg.item_entity] > 0
    from_cache = all(i in got for i, h in zip(ids, has_edges) if h) and bool(got)
    if stats is not None:
        n = int(has_edges.sum())
        stats.update(cached=n if from_cache else 0, computed=0 if from_cache else n)
    if from_cache:
        width = len(next(iter(got.values())))
        feats = np.stack([got.get(i, np.zeros(width, np.float32)) for i in ids]).astype(np.float32)
    else:
        feats = _item_vectors(kg, config, console, progress)
        feats[~has_edges] = 0.0
        if config.normalize:
            feats = l2_normalize(feats)
        if cache is not None:
            cache.put(key, {i: feats[k] for k, i in enumerate(ids) if has_edges[k]})
    return ItemContent(np.array(ids, dtype=object), {name: feats}, {name: has_edges}, {name: key})
