"""An item knowledge graph over a built-in dataset's items: its size, and the path joining two items."""

from __future__ import annotations

from dataclasses import dataclass

from mosaicrec.data.datasets import cache_dir, load_dataset
from mosaicrec.data.kg import load_item_kg, recbole_ml100k_files
from mosaicrec.errors import MosaicError, UnknownItemError


@dataclass
class GraphSummary:
    text: str
    path: str | None = None


def fetch_ml100k_graph() -> tuple[str, str]:
    """RecBole's ml-100k.kg / .link from the recbole==1.2.1 wheel on PyPI, into the cache."""
    kg_path, link_path = recbole_ml100k_files(cache_dir())
    return str(kg_path), str(link_path)


def describe_graph(dataset: str, source: str, items: list[str] | None = None) -> GraphSummary:
    """The graph's size over ``dataset``'s items and, for two item ids, the sentence joining them."""
    data = load_dataset(dataset)
    kg = load_item_kg(data.items, source)
    linked = sum(not str(kg.entities[e]).startswith("item:") for e in kg.item_entity)
    named = int((kg.names != "").sum())
    text = (f"{kg.n_entities:,} entities ({named:,} named), {kg.n_relations} relations, {len(kg.triples):,} "
            f"triples ({', '.join(f'{k}: {v:,}' for k, v in kg.sources.items())}); {linked:,} of "
            f"{len(kg.item_ids):,} items linked to the public graph")
    if not items:
        return GraphSummary(text)
    if len(items) != 2:
        raise MosaicError("--item takes exactly two item ids")
    rows = {str(i): k for k, i in enumerate(kg.item_ids)}
    for i in items:
        if i not in rows:
            raise UnknownItemError(f"unknown item {i!r} in {dataset}")
    titles = dict(zip(data.items["item_id"].astype(str), data.items["title"]))
    found = kg.path(rows[items[0]], rows[items[1]])
    path = f"{titles[items[0]]} → " + (found.sentence(titles[items[1]]) if found else
                                       f"nothing in common with {titles[items[1]]}")
    return GraphSummary(text, path)
