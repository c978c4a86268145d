"""A small served world for the web page's tests: items of three topics with generated posters (and clips
for the music ones) in a media root, users who each like one topic in its own scenario, two saved models to
switch between, and a real evaluation report."""

from __future__ import annotations

import json
import math
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mosaicrec.data.store import Store
from mosaicrec.encoders import create_encoder, encode_items
from mosaicrec.models import create
from mosaicrec.models.training import TrainingInfo, save_trained
from mosaicrec.serving.media import MediaPolicy
from mosaicrec.serving.service import Service

TOPICS = {
    "space": ["rocket launch to orbit", "astronauts on the moon", "a probe to mars", "the space station",
              "a comet passes the sun", "telescopes find a planet"],
    "cooking": ["fresh pasta with tomato sauce", "baking sourdough bread", "a recipe for curry",
                "grilled vegetables and herbs", "chocolate cake dessert", "soup with garlic and onions"],
    "music": ["a jazz trio plays late", "violin concerto in d", "a rock band on tour", "piano sonatas",
              "a choir sings hymns", "drum and bass night"],
}
COLOURS = {"space": (20, 30, 90), "cooking": (200, 90, 30), "music": (40, 140, 60)}
HOSTILE_TITLE = '<img src=x onerror="window.__xss=1">tomato soup'
WRITE, READ, ADMIN = "w-key-123", "r-key-123", "a-key-123"


@dataclass
class World:
    service: Service
    store: Path
    media: Path
    models: Path
    report: Path
    outside: Path


def poster(path: Path, colour: tuple[int, int, int], n: int) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (120, 180), colour)
    ImageDraw.Draw(img).rectangle([10, 10 + 20 * n, 110, 30 + 20 * n], fill=(240, 240, 240))
    img.save(path)


def clip(path: Path, hz: float, seconds: float = 1.0, rate: int = 16_000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * math.pi * hz * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate), w.writeframes(pcm.tobytes())


def build(tmp: Path) -> World:
    media, outside = tmp / "media", tmp / "elsewhere"
    for d in (media / "posters", media / "audio", outside):
        d.mkdir(parents=True)
    rows = []
    for topic, texts in TOPICS.items():
        for j, text in enumerate(texts):
            item = f"{topic}{j}"
            poster(media / "posters" / f"{item}.png", COLOURS[topic], j)
            audio = None
            if topic == "music":
                clip(media / "audio" / f"{item}.wav", 220.0 * (1 + j / 5))
                audio = str(media / "audio" / f"{item}.wav")
            rows.append({"item_id": item, "title": text, "texts": {"description": f"{text}, a {topic} story"},
                         "image": str(media / "posters" / f"{item}.png"), "audio": audio,
                         "attributes": {"topic": topic, "year": str(1990 + j)}})
    poster(outside / "secret.png", (0, 0, 0), 0)
    rows.append({"item_id": "outside", "title": "a poster kept outside the media root", "texts": {},
                 "image": str(outside / "secret.png"), "audio": None, "attributes": {"topic": "cooking"}})
    rows.append({"item_id": "evil", "title": HOSTILE_TITLE, "texts": {"description": "soup with tomato"},
                 "image": None, "audio": None, "attributes": {"topic": "cooking"}})
    rng = np.random.default_rng(0)
    events = []
    for u in range(30):
        topic = list(TOPICS)[u % 3]
        for j in rng.choice(6, 4, replace=False):
            events.append({"user_id": f"u{u:02d}", "item_id": f"{topic}{j}", "timestamp": 1000 + len(events),
                           "event_type": "like", "weight": 1.0,
                           "context": json.dumps({"scenario": f"tab-{topic}"})})
    store = tmp / "store.duckdb"
    with Store(store) as st:
        st.ingest(items=pd.DataFrame(rows), events=pd.DataFrame(events))
        data = st.load_dataset()
    content = encode_items(data.items, {"text": create_encoder("minilm")}, progress=False).content
    models = tmp / "models"
    main = create("content-ease", {"reg": 10.0, "content_weight": 3.0}).fit(data.interactions, content=content)
    info = TrainingInfo(dataset="ui-world", data_as_of=0.0)
    save_trained(main, models / "main", info, content)
    save_trained(create("scenario-pop", {}).fit(data.interactions), models / "by-scenario", info)
    report = tmp / "report"
    write_report(data, report)
    service = Service(main, store, content, info=info, model_root=models, media=MediaPolicy(media))
    return World(service, store, media, models, report, outside)


def write_report(data, folder: Path) -> None:
    """A real (small) evaluation of two models and a content model with its modality ablation, as
    ``mosaicrec evaluate`` writes it."""
    from rich.console import Console

    from mosaicrec.data.splits import SplitConfig
    from mosaicrec.encoders import create_encoder, encode_items
    from mosaicrec.evaluation.ablation import AblationConfig
    from mosaicrec.evaluation.report import write_reports
    from mosaicrec.evaluation.runner import run_experiment
    from mosaicrec.models.registry import ModelSpec

    content = encode_items(data.items, {"text": create_encoder("tfidf", min_df=1, dim=16),
                                        "image": create_encoder("color-texture")}, progress=False).content
    result = run_experiment(data, SplitConfig(test_fraction=0.25, seed=0),
                            [ModelSpec(name="mostpop"), ModelSpec(name="ease", params={"reg": 10.0}),
                             ModelSpec(name="content-knn")],
                            name="ui-world", console=Console(quiet=True), content=content, ablation=AblationConfig())
    write_reports(result, folder)
