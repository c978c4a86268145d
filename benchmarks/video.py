"""Benchmark: video items on real media, against the encoders of their parts on the bare media (issue 34).

No public catalog with raw videos is reachable offline, so the videos are built from the real media in
``../shared/datasets``:

* **Emotify videos**: each of the 400 clips (30 s MP3) becomes the soundtrack of a video with a still grey
  picture (2 frames/s). Measure: genre 1-nearest-neighbour accuracy (leave one out, cosine) of the video
  vector, against YAMNet on the bare clips in the same run.
* **Poster videos**: each ML-100K poster becomes a 4 s silent video (12 frames/s) with a slow pan and zoom
  (1.0 → 1.2, the window drifting across the poster). Measure: the share of each film's 10 nearest films
  (cosine) sharing one of its genres, against EfficientNet-Lite0 on the bare posters in the same run.

Half of each set is H.264 + AAC in MP4, half VP9 + Opus in WebM (every file must decode). Throughput:
videos per second encoded end to end (decode in the sandbox, frames through EfficientNet-Lite0, the
soundtrack through YAMNet) against decoding alone (the sandbox, same threads), on a sample of each set.

Videos are written once under ``.mosaicrec/bench/videos`` and vectors go through the embedding cache.
Writes benchmarks/results/video.json and .md.
Usage: python benchmarks/video.py [--max-frames 4] [--sample 60] [--limit N]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from mosaicrec.data import load_dataset
from mosaicrec.encoders import EmbeddingCache, create_encoder, default_cache_path, encode_items
from mosaicrec.encoders.video_io import Sandbox, VideoLimits, write_video
from mosaicrec.evaluation.provenance import write_result

RESULTS = Path(__file__).parent / "results"
VIDEOS = Path(".mosaicrec/bench/videos")
TARGET = {"emotify": 0.695, "posters": 0.476}  # the figures for the bare media


def emotify_video(src: str, out: str) -> str:
    import soundfile as sf

    if not Path(out).exists():
        wave, sr = sf.read(src, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
        seconds = len(wave) / sr
        grey = np.full((64, 64, 3), 128, np.uint8)
        write_video(Path(out + ".part" + Path(out).suffix), (grey for _ in range(max(1, int(2 * seconds)))),
                    fps=2, wave=wave, sample_rate=sr)
        Path(out + ".part" + Path(out).suffix).replace(out)
    return out


def poster_video(src: str, out: str, seconds: float = 4.0, fps: int = 12) -> str:
    from PIL import Image

    if not Path(out).exists():
        im = Image.open(src).convert("RGB")
        w, h = im.size
        frames = []
        n = int(seconds * fps)
        for i in range(n):
            t = i / max(n - 1, 1)
            zoom = 1.0 + 0.2 * t
            cw, ch = w / zoom, h / zoom
            left, top = (w - cw) * t, (h - ch) * (0.25 + 0.5 * t)  # drifting right and down
            crop = im.crop((left, top, left + cw, top + ch)).resize((184, 276), Image.Resampling.BILINEAR)
            frames.append(np.asarray(crop))
        write_video(Path(out + ".part" + Path(out).suffix), frames, fps=fps)
        Path(out + ".part" + Path(out).suffix).replace(out)
    return out


def build(kind: str, items: pd.DataFrame, column: str, limit: int | None) -> pd.DataFrame:
    """The set's videos (written on first use), alternating MP4 and WebM."""
    folder = VIDEOS / kind
    folder.mkdir(parents=True, exist_ok=True)
    items = items[items[column].notna()].iloc[:limit].reset_index(drop=True)
    outs = [str(folder / f"{i}.{'mp4' if k % 2 == 0 else 'webm'}") for k, i in enumerate(items["item_id"])]
    make = emotify_video if kind == "emotify" else poster_video
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(make, items[column], outs, chunksize=8))
    print(f"{kind}: {len(outs)} videos ready in {time.perf_counter() - t0:.0f} s")
    return items.assign(video=outs)


def nn_genre(x: np.ndarray, labels: list[str]) -> float:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    nn = sims.argmax(1)
    return float(np.mean([labels[i] == labels[j] for i, j in enumerate(nn)]))


def share_genre(x: np.ndarray, genres: list[set], k: int = 10) -> float:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :k]
    return float(np.mean([[bool(genres[i] & genres[j]) for j in row] for i, row in enumerate(top)]))


def throughput(items: pd.DataFrame, max_frames: int) -> dict[str, float]:
    """Videos per second: decoding alone (the sandbox, two threads as the encode stage runs) and encoding
    end to end without the cache (the same decoding, then the models)."""
    paths = list(items["video"])
    with Sandbox(VideoLimits()) as sb:
        sb.decode(paths[0], max_frames)  # start the children outside the clock
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda p: sb.probe(p, 32), paths[:2]))
            t0 = time.perf_counter()
            list(pool.map(lambda p: sb.decode(p, max_frames), paths))
            decode = time.perf_counter() - t0
    enc = create_encoder("video", max_frames=max_frames).setup()
    t0 = time.perf_counter()
    result = encode_items(items, {"video": enc}, progress=False)
    total = time.perf_counter() - t0 - result.reports[0].load_seconds
    enc.close()
    return {"videos": len(paths), "decode_per_s": len(paths) / decode, "encode_per_s": len(paths) / total,
            "decode_share": decode / total}


def encode(items: pd.DataFrame, encoders: dict, cache: EmbeddingCache) -> tuple[dict, list]:
    result = encode_items(items, encoders, cache=cache)
    return result.content, result.reports


def run_emotify(args, cache: EmbeddingCache) -> dict:
    items = build("emotify", load_dataset("emotify").items, "audio", args.limit)
    genre = [a["genre"] for a in items["attributes"]]
    c, reports = encode(items, {"clip": create_encoder("yamnet"),
                                "video": create_encoder("video", max_frames=args.max_frames)}, cache)
    assert c.masks["clip"].all(), "every bare clip must encode"
    ok = c.masks["video"]
    return {"items": len(items), "decoded": {s: int(ok[[p.endswith(s) for p in items["video"]]].sum())
                                             for s in (".mp4", ".webm")},
            "failures": [f for r in reports for f in r.failures],
            "ours": nn_genre(c.features["video"][ok], [g for g, o in zip(genre, ok) if o]),
            "baseline": nn_genre(c.features["clip"], genre), "target": TARGET["emotify"],
            "throughput": throughput(items.iloc[:args.sample], args.max_frames)}


def run_posters(args, cache: EmbeddingCache) -> dict:
    items = build("posters", load_dataset("ml100k-multimodal").items, "image", args.limit)
    genres = [set(a.get("genres") or []) for a in items["attributes"]]
    c, reports = encode(items, {"poster": create_encoder("efficientnet-lite0"),
                                "video": create_encoder("video", max_frames=args.max_frames)}, cache)
    both = c.masks["poster"] & c.masks["video"]
    keep = [g for g, b in zip(genres, both) if b]
    return {"items": len(items), "decoded": {s: int(c.masks["video"][[p.endswith(s) for p in items["video"]]].sum())
                                             for s in (".mp4", ".webm")},
            "failures": [f for r in reports for f in r.failures],
            "ours": share_genre(c.features["video"][both], keep),
            "baseline": share_genre(c.features["poster"][both], keep), "target": TARGET["posters"],
            "throughput": throughput(items.iloc[:args.sample], args.max_frames)}


def table(out: dict) -> str:
    lines = ["| set | measure | video vector | bare media (same run) | Δ | issue's bare figure | MP4 / WebM decoded |",
             "|---|---|---:|---:|---:|---:|---|"]
    names = {"emotify": ("Emotify videos (clip as soundtrack)", "genre 1-NN accuracy", "YAMNet on the clips"),
             "posters": ("ML-100K poster videos (pan and zoom)", "10-NN share a genre", "EfficientNet on the posters")}
    for key, r in out["sets"].items():
        name, measure, base = names[key]
        total = r["items"]
        lines.append(f"| {name} | {measure} | {r['ours']:.3f} | {r['baseline']:.3f} ({base}) | "
                     f"{r['ours'] - r['baseline']:+.3f} | {r['target']:.3f} | {r['decoded']['.mp4']} / "
                     f"{r['decoded']['.webm']} of {total} |")
    lines += ["", "| set | videos | decode alone, videos/s | encode end to end, videos/s | encode / decode |",
              "|---|---:|---:|---:|---:|"]
    for key, r in out["sets"].items():
        t = r["throughput"]
        lines.append(f"| {key} | {t['videos']} | {t['decode_per_s']:.1f} | {t['encode_per_s']:.1f} | "
                     f"{t['encode_per_s'] / t['decode_per_s']:.2f} |")
    lines += ["", f"max {out['max_frames']} frames per video; 2-core CPU; encode = sandboxed decoding + "
              "EfficientNet-Lite0 on the frames + YAMNet on the soundtrack (first 30 s)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-frames", type=int, default=4, help="frames sampled per video")
    ap.add_argument("--sample", type=int, default=60, help="videos per set in the throughput measure")
    ap.add_argument("--limit", type=int, default=None, help="first N items of each set (a quick run)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with EmbeddingCache(default_cache_path()) as cache:
        sets = {"emotify": run_emotify(args, cache), "posters": run_posters(args, cache)}
    out = {"sets": sets, "max_frames": args.max_frames, "seconds": time.perf_counter() - t0}
    text = table(out)
    path = write_result(RESULTS, "video", out, text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
