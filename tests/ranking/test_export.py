"""Top-k export to sharded Parquet: Ray Data on a real local cluster writes the same rows as one process."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from mosaicrec.data.synthetic import synthetic_log
from mosaicrec.errors import MosaicError
from mosaicrec.models import create
from mosaicrec.ranking.export import export_top_k, read_export

pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def model():
    x, _ = synthetic_log(3_000, 500, 60_000, topics=10, seed=2)
    return create("als", {"factors": 16, "iterations": 3}).fit(x)


def test_ray_export_writes_the_rows_of_the_local_export(ray_cluster, model, tmp_path):
    local = export_top_k(model, tmp_path / "local", k=5, rows_per_file=4_000, batch_size=700)
    remote = export_top_k(model, tmp_path / "ray", k=5, workers=2, batch_size=700, rows_per_file=4_000)
    assert local.rows == remote.rows == 5 * 3_000 and local.files == 3 and remote.files >= 2  # parts of ≥ 4,000 rows here; Ray writes a part per task
    a, b = read_export(tmp_path / "local"), read_export(tmp_path / "ray")
    assert a.column_names == b.column_names == ["user_id", "rank", "item_id", "score"]
    for col in ("user_id", "rank", "item_id"):
        assert a.column(col).to_pylist() == b.column(col).to_pylist()
    np.testing.assert_allclose(a.column("score").to_numpy(), b.column("score").to_numpy(), rtol=1e-6)
    # what was written is the model's own list, training items left out
    first = a.slice(0, 5)
    user = int(first.column("user_id")[0].as_py()[1:])
    items, _ = model.recommend(np.array([user]), 5, exclude_seen=True)
    assert [model.item_ids[i] for i in items[0]] == first.column("item_id").to_pylist()
    seen = set(model._require_fitted()[user].indices)
    assert not seen & {int(i[1:]) for i in first.column("item_id").to_pylist()}


def test_export_refuses_a_used_folder_and_bad_sizes(model, tmp_path):
    export_top_k(model, tmp_path / "a", k=2, users=np.arange(10))
    assert pq.read_table(tmp_path / "a").num_rows == 20
    with pytest.raises(MosaicError, match="not empty"):
        export_top_k(model, tmp_path / "a", k=2)
    with pytest.raises(MosaicError, match="k must be"):
        export_top_k(model, tmp_path / "b", k=0)
