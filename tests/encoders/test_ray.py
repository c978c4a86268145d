"""The Ray path: a real local cluster, the same batches, the same vectors as a single-process run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mosaicrec.encoders import EmbeddingCache, create_encoder, encode_items

pytestmark = pytest.mark.xdist_group("ray")


def test_ray_run_matches_the_single_process_run(ray_cluster, media_catalog: pd.DataFrame, tmp_path: Path):
    def encoders():
        return {"text": create_encoder("minilm", threads=1, batch_size=3),
                "image": create_encoder("efficientnet-lite0", threads=1, batch_size=2),
                "audio": create_encoder("yamnet", threads=1, batch_size=2)}

    local = encode_items(media_catalog, encoders(), progress=False)
    with EmbeddingCache(tmp_path / "emb.duckdb") as cache:
        remote = encode_items(media_catalog, encoders(), cache=cache, ray="local", progress=False)
        assert sorted(cache.counts().values()) == [3, 3, 6]  # 6 distinct texts, 3 images, 3 clips
    assert ray_cluster.is_initialized()  # an existing cluster is used, not shut down
    for name in ("text", "image", "audio"):
        np.testing.assert_array_equal(local.content.masks[name], remote.content.masks[name])
        np.testing.assert_allclose(local.content.features[name], remote.content.features[name], atol=1e-6)
        assert dict(local.reports[0].failures) == dict(remote.reports[0].failures)
    assert dict(remote.reports[1].failures).keys() == {"3", "4", "5"}


def test_fitted_encoders_refuse_the_ray_path(ray_cluster, media_catalog: pd.DataFrame):
    from mosaicrec.errors import ConfigError

    with pytest.raises(ConfigError, match="without --ray"):
        encode_items(media_catalog, {"text": create_encoder("tfidf", min_df=1)}, ray="local", progress=False)


def test_videos_encode_on_ray_as_they_do_locally(ray_cluster, tmp_path: Path):
    pytest.importorskip("av")
    from tests.encoders.test_video import _scenes, _tone
    from mosaicrec.encoders.video_io import write_video

    paths = [str(write_video(tmp_path / f"v{i}.{'mp4' if i % 2 else 'webm'}", _scenes(24 + 12 * i),
                             wave=_tone(300 + 100 * i, 1.5))) for i in range(3)]
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": "", "texts": [{}] * 4, "image": None,
                          "audio": None, "video": paths + [str(tmp_path / "no.mp4")], "attributes": [{}] * 4})

    def encoders():
        return {"video": create_encoder("video", frames="color-texture", audio="mfcc-stats", batch_size=2)}

    local = encode_items(items, encoders(), progress=False)
    remote = encode_items(items, encoders(), ray="local", progress=False)
    assert remote.content.masks["video"].tolist() == [True, True, True, False]
    np.testing.assert_allclose(local.content.features["video"], remote.content.features["video"], atol=1e-5)
    assert dict(remote.reports[0].failures).keys() == {"d"}
