"""Small catalogs with generated media, broken files included, made on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def tone(path: Path, freq: float, seconds: float = 2.0, sr: int = 22_050, noise: bool = False) -> str:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(int(freq))
    wave = rng.normal(0, 0.3, t.shape) if noise else 0.5 * np.sin(2 * np.pi * freq * t)
    sf.write(path, wave.astype(np.float32), sr)
    return str(path)


def picture(path: Path, seed: int, kind: str = "stripes") -> str:
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = 120, 90
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "stripes":
        img = np.stack([(np.sin(xx / (3 + seed)) > 0) * 255, yy * 2 % 256, np.full_like(xx, 40 * seed % 256)], -1)
    else:
        img = rng.integers(0, 256, (h, w, 3))
    Image.fromarray(img.astype(np.uint8)).save(path)
    return str(path)


def catalog(folder: Path) -> pd.DataFrame:
    """Eight items: good text/image/audio for most, and one broken input of each kind."""
    folder.mkdir(parents=True, exist_ok=True)
    good_jpg = picture(folder / "a.png", 1)
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + bytes(range(256)))
    truncated = folder / "truncated.png"
    full = Path(picture(folder / "full.png", 5, "noise")).read_bytes()
    truncated.write_bytes(full[: len(full) // 3])
    bad_audio = folder / "bad.wav"
    bad_audio.write_text("RIFF? no, just text")
    rows = [
        ("1", "A cat sits on the mat", {"description": "a small cat"}, good_jpg, tone(folder / "t1.wav", 440)),
        ("2", "A kitten on a rug", {"description": "a young cat"}, picture(folder / "b.png", 2),
         tone(folder / "t2.wav", 460)),
        ("3", "Stock markets fall", {"description": "shares drop"}, str(corrupt), tone(folder / "t3.wav", 0, noise=True)),
        ("4", "Team wins the cup", {}, str(truncated), str(bad_audio)),
        ("5", "", {}, str(folder / "missing.png"), None),
        ("6", "Rain tomorrow", {"description": "weather forecast"}, None, None),
        ("7", "A cat sits on the mat", {"description": "a small cat"}, good_jpg, None),  # same content as 1
        ("8", "Cooking pasta", {"description": "boil water"}, picture(folder / "c.png", 3, "noise"), None),
    ]
    return pd.DataFrame({"item_id": [r[0] for r in rows], "title": [r[1] for r in rows],
                         "texts": [r[2] for r in rows], "image": [r[3] for r in rows],
                         "audio": [r[4] for r in rows], "attributes": [{} for _ in rows]})


@pytest.fixture
def media_catalog(tmp_path: Path) -> pd.DataFrame:
    return catalog(tmp_path / "media")
