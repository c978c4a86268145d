"""The demo on a built-in real dataset: ingest it into the store, evaluate the classic models, show one
user's list from the best of them (by the serving pipeline), encode the catalog's content and show nearest
neighbours per modality (and, with the shared data, the Emotify clips by audio), then run the multimodal
and cold-start config on that content."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from mosaicrec.app.experiment import ExperimentRun, run_config
from mosaicrec.config import MULTIMODAL_CONFIG, demo_config, load_config
from mosaicrec.data.datasets import dataset_available, load_dataset
from mosaicrec.data.schema import Dataset
from mosaicrec.data.store import default_store_path
from mosaicrec.encoders import DEFAULT_ENCODERS, EmbeddingCache, EncodeReport, create_encoder, default_cache_path, \
    encode_items
from mosaicrec.ranking.export import Listing
from mosaicrec.ranking.lists import Recommended
from mosaicrec.ranking.pipeline import Pipeline, Request


@dataclass
class Neighbours:
    """One modality's nearest items of a few probe items, for a person to judge the embeddings."""

    title: str
    rows: list[tuple[str, str]]  # (item, its nearest items with cosines)


@dataclass
class DemoRun:
    experiment: ExperimentRun
    best: str
    example: Recommended
    encode_reports: list[EncodeReport] = field(default_factory=list)
    cache: Path | None = None
    neighbours: list[Neighbours] = field(default_factory=list)
    multimodal: ExperimentRun | None = None


def default_dataset() -> str:
    return "ml100k-multimodal" if dataset_available("ml100k-multimodal")[0] else "movielens-100k"


def demo_experiment(dataset: str | None = None, store: Path | None = None, output: Path | None = None,
                    console: Console | None = None) -> DemoRun:
    """Part one: the classic models on the dataset (ingested into the store), and one user's list from the
    best of them by the serving pipeline."""
    cfg = demo_config(dataset or default_dataset())
    cfg.dataset.store = str(store) if store else None
    experiment = run_config(cfg, output, keep_models=True, use_store=True, console=console)
    result, data = experiment.result, experiment.data
    best = max(result.rows, key=lambda r: r.metrics.get("ndcg@10", 0.0))
    titles = dict(zip(data.items["item_id"].astype(str), data.items["title"].fillna("").astype(str)))
    listing = Listing.of_model(best.fitted, titles=titles)
    user = str(data.interactions.user_ids[0])
    example = Pipeline(listing.live).run(listing.snapshot(), Request(user, 5, reasons="none"))
    return DemoRun(experiment, best.label, example)


def demo_content(run: DemoRun, store: Path | None = None, console: Console | None = None) -> None:
    """Part two: the catalog's content encoded, and nearest neighbours per modality."""
    _content(run, run.experiment.data, store, console or Console(stderr=True))


def demo_multimodal(run: DemoRun, store: Path | None = None, output: Path | None = None,
                    console: Console | None = None) -> ExperimentRun | None:
    """Part three (ml100k-multimodal only): the multimodal and cold-start config on the content just
    encoded (read back from the cache)."""
    if run.experiment.data.name != "ml100k-multimodal":
        return None
    mm = load_config(MULTIMODAL_CONFIG)
    mm.dataset.store = str(store) if store else None
    mm.content.cache = str(default_cache_path(store))  # the cache the demo just filled
    run.multimodal = run_config(mm, output / "multimodal" if output else None, use_store=True, console=console)
    return run.multimodal


def _content(run: DemoRun, data: Dataset, store: Path | None, console: Console) -> None:
    """Encode the demo catalog's content and find nearest neighbours per modality; with the shared data
    there, the Emotify clips by audio."""
    run.cache = default_cache_path(store or default_store_path())
    has_plots = any("description" in t for t in data.items["texts"])
    with EmbeddingCache(run.cache) as cache:
        result = encode_items(data.items, cache=cache, console=console,
                              text_fields=["title", "description"] if has_plots else None)
        run.encode_reports += result.reports
        content = result.content
        popular = np.argsort(-np.bincount(data.interactions.items, minlength=data.interactions.n_items),
                             kind="stable")
        index = {i: k for k, i in enumerate(content.item_ids)}
        probes = [index[data.interactions.item_ids[i]] for i in popular[:40]]
        probes = [p for p in probes if all(content.masks[m][p] for m in content.modalities)][:3]
        titles = data.items["title"].to_numpy()
        for name in content.modalities:
            rows = []
            for p in probes:
                top, sims = content.nearest(name, p, 3)
                rows.append((titles[p], "; ".join(f"{titles[t]} ({s:.2f})" for t, s in zip(top, sims))))
            run.neighbours.append(Neighbours(f"nearest items by {name} ({content.sources[name]})", rows))
        if dataset_available("emotify")[0]:
            _emotify(run, cache, console)


def _emotify(run: DemoRun, cache: EmbeddingCache, console: Console) -> None:
    clips = load_dataset("emotify").items
    audio = encode_items(clips, {"audio": create_encoder(DEFAULT_ENCODERS["audio"])}, cache=cache, console=console)
    run.encode_reports += audio.reports
    genre = np.array([a.get("genre", "") for a in clips["attributes"]])
    c = audio.content
    sims = c.features["audio"] @ c.features["audio"].T
    np.fill_diagonal(sims, -np.inf)
    agree = float((genre[sims.argmax(1)] == genre).mean())
    rows = []
    for g in np.unique(genre):
        p = int(np.flatnonzero(genre == g)[0])
        top, s = c.nearest("audio", p, 3)
        rows.append((f"{c.item_ids[p]} ({g})", "; ".join(f"{c.item_ids[t]} ({genre[t]}, {v:.2f})" for t, v in zip(top, s))))
    run.neighbours.append(Neighbours(f"Emotify clips: nearest by audio ({c.sources['audio']}); the nearest clip has "
                                     f"the same genre for {agree:.0%} of clips (chance 25%)", rows))
