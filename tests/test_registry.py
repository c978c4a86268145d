"""One registry mechanism for models, encoders and datasets, which a separate package extends through Python
entry points (an installed distribution's ``entry_points.txt``), without touching mosaicrec."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mosaicrec.data.datasets import DATASETS
from mosaicrec.encoders import ENCODERS
from mosaicrec.errors import ConfigError
from mosaicrec.models import MODELS, create
from mosaicrec.registry import Registry

PLUGIN = '''
import numpy as np
from mosaicrec.data.datasets import DatasetSource
from mosaicrec.encoders.base import Encoder
from mosaicrec.models.popularity import MostPopular


class Reverse(MostPopular):
    """Ranks the least popular first."""

    def _scores(self, query):
        return -super()._scores(query)


class Lengths(Encoder):
    name = "never-used"
    modality = "text"
    description = "text length"
    dim = 1

    def decode(self, ref):
        return len(ref)

    def forward(self, batch):
        return np.array([[n] for n in batch], np.float32)


def tiny(data_root, cache_dir):
    """Three events from a plugin package."""
    path = cache_dir / "tiny.csv"
    path.write_text("user_id,item_id,timestamp\\nu1,a,1\\nu1,b,2\\nu2,a,3\\n")
    return DatasetSource(name="tiny", events=str(path))
'''


def _install_plugin(root: Path, entry_points: str) -> None:
    """A distribution on the path: a package and its dist-info with METADATA and entry_points.txt, which
    is all that ``importlib.metadata`` reads (what ``pip install`` of a plugin leaves)."""
    (root / "fakeplug").mkdir()
    (root / "fakeplug" / "__init__.py").write_text(PLUGIN)
    info = root / "fakeplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def _run(root: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path]), "MOSAICREC_CACHE": str(root)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=root, timeout=300)


def test_a_separate_package_adds_a_model_an_encoder_and_a_dataset_by_entry_points(tmp_path):
    _install_plugin(tmp_path, """
        [mosaicrec.models]
        reverse-pop = fakeplug:Reverse
        [mosaicrec.encoders]
        lengths = fakeplug:Lengths
        [mosaicrec.datasets]
        tiny = fakeplug:tiny
    """)
    done = _run(tmp_path, """
        import numpy as np
        from mosaicrec.config import parse_config
        from mosaicrec.data.datasets import DATASETS, load_dataset
        from mosaicrec.encoders import create_encoder
        from mosaicrec.models import MODELS, create

        assert "reverse-pop" in MODELS and MODELS["reverse-pop"].name == "reverse-pop"
        data = load_dataset("tiny")                          # the plugin's dataset, through the loaders
        model = create("reverse-pop").fit(data.interactions)
        assert model.score(np.array([1]))[0].argmax() == list(data.interactions.item_ids).index("b")
        enc = create_encoder("lengths")
        assert enc.name == "lengths" and enc.encode(["abc"]).shape == (1, 1)
        assert DATASETS["tiny"].description == "Three events from a plugin package."
        cfg = parse_config({"dataset": {"name": "tiny"}, "models": [{"name": "reverse-pop"}]})
        print("ok", cfg.models[0].name)
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok reverse-pop"


def test_a_broken_plugin_is_named_when_its_registry_is_read(tmp_path):
    _install_plugin(tmp_path, """
        [mosaicrec.models]
        ghost = fakeplug:NoSuchClass
    """)
    done = _run(tmp_path, """
        from mosaicrec.models import create
        try:
            create("ease")
        except Exception as e:
            print(type(e).__name__, e)
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "PluginError" in done.stdout and "'ghost' (fakeplug:NoSuchClass)" in done.stdout


def test_every_stage_uses_the_one_registry_and_names_what_is_available():
    assert all(isinstance(r, Registry) for r in (MODELS, ENCODERS, DATASETS))
    assert {"ease", "als", "bpr"} <= set(MODELS) and "minilm" in ENCODERS and "movielens-100k" in DATASETS
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; available: .*ease"):
        create("nope")


def test_a_name_cannot_be_taken_twice():
    reg: Registry[object] = Registry("thing", "mosaicrec.test-none")

    class A:
        pass

    class B:
        pass

    reg.add("a", A)
    reg.add("a", A)  # the same part again is fine (a module imported twice)
    with pytest.raises(ConfigError, match="two things are registered as 'a'"):
        reg.add("a", B)
