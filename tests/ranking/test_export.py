"""Every user's list to Parquet: Ray Data on a real local cluster writes the rows of one process, both by the
one pipeline (a bare model's listing: each user's training items left out, as ``recommend`` does)."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from mosaicrec.data.synthetic import synthetic_log
from mosaicrec.errors import MosaicError
from mosaicrec.models import create
from mosaicrec.ranking.export import Listing, export_lists, read_export

pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def model():
    x, _ = synthetic_log(3_000, 500, 60_000, topics=10, seed=2)
    return create("als", {"factors": 16, "iterations": 3}).fit(x)


def test_ray_export_writes_the_rows_of_the_local_export(ray_cluster, model, tmp_path):
    listing = Listing.of_model(model)
    local = export_lists(listing, tmp_path / "local", k=5, rows_per_file=4_000, batch_size=700)
    remote = export_lists(listing, tmp_path / "ray", k=5, workers=2, batch_size=700, rows_per_file=4_000)
    assert local.rows == remote.rows == 5 * 3_000 and local.files == 3 and remote.files >= 2
    a, b = read_export(tmp_path / "local"), read_export(tmp_path / "ray")
    assert a.column_names == b.column_names == ["user_id", "rank", "item_id", "score", "cold_start"]
    for col in ("user_id", "rank", "item_id", "cold_start"):
        assert a.column(col).to_pylist() == b.column(col).to_pylist()
    np.testing.assert_allclose(a.column("score").to_numpy(), b.column("score").to_numpy(), rtol=1e-6)
    # what was written is the model's own list, training items left out
    first = a.slice(0, 5)
    user = list(model.user_ids).index(first.column("user_id")[0].as_py())
    items, scores = model.recommend(np.array([user]), 5, exclude_seen=True)
    assert [model.item_ids[i] for i in items[0]] == first.column("item_id").to_pylist()
    np.testing.assert_allclose(scores[0], first.column("score").to_numpy(), rtol=1e-5)


def test_export_refuses_a_used_folder_bad_sizes_and_a_file_for_workers(model, tmp_path):
    listing = Listing.of_model(model)
    export_lists(listing, tmp_path / "a", k=2, users=[str(u) for u in model.user_ids[:10]])
    assert pq.read_table(tmp_path / "a").num_rows == 20
    with pytest.raises(MosaicError, match="not empty"):
        export_lists(listing, tmp_path / "a", k=2)
    with pytest.raises(MosaicError, match="k must be"):
        export_lists(listing, tmp_path / "b", k=0)
    with pytest.raises(MosaicError, match="give --out a folder"):
        export_lists(listing, tmp_path / "c.parquet", k=2, workers=2)
    with pytest.raises(MosaicError, match="ranks the same in every scenario"):
        export_lists(listing, tmp_path / "d", k=2, scenario="feed")


def test_a_user_the_model_never_saw_gets_the_popular_items(model, tmp_path):
    listing = Listing.of_model(model)
    export_lists(listing, tmp_path / "x.csv", k=3, users=["stranger", str(model.user_ids[0])])
    rows = read_export(tmp_path / "x.csv").to_pandas()
    stranger = rows[rows["user_id"] == "stranger"]
    assert stranger["cold_start"].all() and len(stranger) == 3
    popular = np.argsort(-np.diff(model._require_fitted().tocsc().indptr), kind="stable")[:3]
    assert stranger["item_id"].tolist() == [str(model.item_ids[i]) for i in popular]
