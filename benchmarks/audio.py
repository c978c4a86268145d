"""Benchmark: does the sound of a clip predict who likes it? Emotify, by listener context (issue 14).

Emotify has no user ids (every response is an anonymous listener), so recommendation is by listener
context: a model predicts p(like | clip, listener) from the clip's audio embedding (and genre) and the
listener's age, gender and mother tongue, with clip × listener interaction terms, so that different
listeners get different rankings. 20% of the clips are held out per seed with all their responses (new
items: no model has seen a response to them); hyper-parameters (the logistic regression's C and the audio
width) are chosen on clips carved out of the training clips, never on the held-out ones.

Measured on the held-out clips, mean ± std over seeds:
- AUC of the predicted like probability over all held-out responses;
- NDCG@10 per listener profile (age band × gender × language group): each profile with responses to at
  least 10 held-out clips ranks those clips; a clip's gain is the share of that profile's responses that
  liked it. Profiles are compared user-by-user style (paired over profiles, pooled over seeds).
Rows: random; popularity (the like rate of the clip's genre in training: all a catalog without audio
knows of a new clip); logistic regressions with no audio (genre + context), MFCC statistics, YAMNet, and
YAMNet without the genre. Audio is encoded through the embedding cache (first run ≈ 1-2 min).

Writes benchmarks/results/audio.json and .md. Usage: python benchmarks/audio.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mosaicrec.data import load_dataset
from mosaicrec.encoders import ContentConfig, encode_content
from mosaicrec.evaluation.stats import fmt, fmt_p, paired
from mosaicrec.evaluation.provenance import write_result

RESULTS = Path(__file__).parent / "results"
AGES = [0, 21, 26, 31, 41, 200]
CS = [0.01, 0.03, 0.1, 0.3, 1.0]
WIDTHS = [8, 16, 32]


def listener_features(ctx: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One-hot age band, gender and language group per response, and a profile id per response."""
    age = np.array([int(a) if str(a).isdigit() else 25 for a in ctx["listener_age"]])
    band = np.digitize(age, AGES[1:-1])
    gender = np.array([1 if str(g) == "1" else 0 for g in ctx["listener_gender"]])
    lang = np.array([str(v).strip().lower() for v in ctx["listener_mother_tongue"]])
    top = [v for v, _ in sorted(zip(*np.unique(lang, return_counts=True)), key=lambda t: -t[1])[:5]]
    group = np.array([top.index(v) if v in top else len(top) for v in lang])
    one_hot = np.concatenate([np.eye(len(AGES) - 1)[band], np.eye(2)[gender], np.eye(len(top) + 1)[group]], 1)
    profile = band * 100 + gender * 10 + group
    return one_hot.astype(np.float32), profile


def design(clip: np.ndarray, listener: np.ndarray) -> np.ndarray:
    """[clip, listener, clip ⊗ listener]: the interaction terms let the ranking of clips depend on who listens."""
    cross = (clip[:, :, None] * listener[:, None, :]).reshape(len(clip), -1)
    return np.concatenate([clip, listener, cross], axis=1)


def clip_features(kind: str, audio: dict[str, np.ndarray], genre: np.ndarray, train_clips: np.ndarray,
                  width: int) -> np.ndarray:
    """Per clip: genre one-hot and/or audio reduced by PCA fitted on the training clips only."""
    parts = []
    if kind != "yamnet-only":
        parts.append(genre)
    if kind in ("mfcc", "yamnet", "yamnet-only"):
        x = audio["mfcc" if kind == "mfcc" else "yamnet"]
        x = (x - x[train_clips].mean(0)) / (x[train_clips].std(0) + 1e-6)
        pca = PCA(n_components=min(width, len(train_clips) - 1), random_state=0).fit(x[train_clips])
        z = pca.transform(x)
        parts.append(z / (z[train_clips].std(0) + 1e-6))
    return np.concatenate(parts, axis=1).astype(np.float32)


def profile_ndcg(scores: np.ndarray, liked: np.ndarray, items: np.ndarray, profiles: np.ndarray,
                 min_clips: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@10 of each profile's ranking of the clips it responded to (gain: its like rate per clip)."""
    out, ids = [], []
    for p in np.unique(profiles):
        sel = profiles == p
        clips, inv = np.unique(items[sel], return_inverse=True)
        if len(clips) < min_clips:
            continue
        gain = np.bincount(inv, weights=liked[sel]) / np.bincount(inv)
        score = np.bincount(inv, weights=scores[sel]) / np.bincount(inv)
        order = np.argsort(-score, kind="stable")[:10]
        dcg = (gain[order] / np.log2(np.arange(2, len(order) + 2))).sum()
        ideal = np.sort(gain)[::-1][:10]
        idcg = (ideal / np.log2(np.arange(2, len(ideal) + 2))).sum()
        out.append(dcg / idcg if idcg > 0 else 0.0)
        ids.append(p)
    return np.array(out), np.array(ids)


def fit_predict(kind, audio, genre, listener, items, liked, train_clips, fit_rows, pred_rows, c, width):
    clip = clip_features(kind, audio, genre, train_clips, width)
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(design(clip[items[fit_rows]], listener[fit_rows]), liked[fit_rows])
    return model.predict_proba(design(clip[items[pred_rows]], listener[pred_rows]))[:, 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    console = Console()
    t0 = time.perf_counter()
    data = load_dataset("emotify")
    content = encode_content(data.items, ContentConfig(encoders={"yamnet": "yamnet", "mfcc": "mfcc-stats"}),
                             console=console).content
    x = data.interactions
    audio = {m: content.align(x.item_ids).features[m].astype(np.float64) for m in ("yamnet", "mfcc")}
    genre_of = dict(zip(data.items["item_id"].astype(str), [a.get("genre") for a in data.items["attributes"]]))
    genres = sorted({g for g in genre_of.values() if g})
    genre = np.eye(len(genres), dtype=np.float32)[[genres.index(genre_of[str(i)]) for i in x.item_ids]]
    listener, profiles = listener_features(x.context)
    items, liked = x.items, (x.weights > 0).astype(np.float64)
    n_items = x.n_items
    kinds = ["no audio", "mfcc", "yamnet", "yamnet-only"]
    labels = {"no audio": "no audio (genre + listener)", "mfcc": "MFCC stats + genre",
              "yamnet": "YAMNet + genre", "yamnet-only": "YAMNet (no genre)"}
    runs: dict[str, list[dict]] = {}
    per_profile: dict[str, list[np.ndarray]] = {}
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        test_clips = rng.choice(n_items, n_items // 5, replace=False)
        is_test = np.isin(items, test_clips)
        train_clips = np.setdiff1d(np.arange(n_items), test_clips)
        val_clips = rng.choice(train_clips, len(train_clips) // 5, replace=False)  # carved from training
        is_val = np.isin(items, val_clips)
        fit_rows, val_rows = ~is_test & ~is_val, is_val
        inner_train = np.setdiff1d(train_clips, val_clips)
        test_rows = np.flatnonzero(is_test)
        scores = {"random": rng.random(len(test_rows))}
        rate = {g: liked[~is_test & (genre[items, g] > 0)].mean() for g in range(len(genres))}
        scores["popularity (genre like rate)"] = np.array([rate[int(np.argmax(genre[items[r]]))] for r in test_rows])
        chosen = {}
        for kind in kinds:
            grid = [(c, w) for c in CS for w in (WIDTHS if kind != "no audio" else [0])]
            val_auc = {cw: roc_auc_score(liked[val_rows], fit_predict(kind, audio, genre, listener, items, liked,
                                                                      inner_train, fit_rows, val_rows, *cw))
                       for cw in grid}
            c, w = max(val_auc, key=val_auc.get)
            chosen[kind] = {"C": c, "width": w, "validation_auc": round(val_auc[(c, w)], 4)}
            scores[labels[kind]] = fit_predict(kind, audio, genre, listener, items, liked, train_clips,
                                               ~is_test, test_rows, c, w)
        for label, sc in scores.items():
            nd, _ = profile_ndcg(sc, liked[test_rows], items[test_rows], profiles[test_rows])
            runs.setdefault(label, []).append({"seed": seed, "auc": roc_auc_score(liked[test_rows], sc),
                                               "ndcg@10": float(nd.mean()), "profiles": len(nd),
                                               "chosen": chosen.get(next((k for k, v in labels.items()
                                                                          if v == label), ""), None)})
            per_profile.setdefault(label, []).append(nd)
    rows = []
    for label, rs in runs.items():
        auc = np.array([r["auc"] for r in rs])
        nd = np.array([r["ndcg@10"] for r in rs])
        rows.append({"model": label, "auc": (auc.mean(), auc.std(ddof=1) if len(auc) > 1 else 0.0),
                     "ndcg@10": (nd.mean(), nd.std(ddof=1) if len(nd) > 1 else 0.0),
                     "profiles": int(np.mean([r["profiles"] for r in rs]))})
    compared = [{"model": m, "against": b, **paired(per_profile[m], per_profile[b])}
                for m, b in ((labels["yamnet"], labels["no audio"]), (labels["mfcc"], labels["no audio"]),
                             (labels["yamnet"], labels["mfcc"]), (labels["no audio"], "popularity (genre like rate)"),
                             (labels["yamnet"], "random"))]
    table = Table(title=f"Emotify: liking of held-out clips by listener context, seeds {args.seeds}")
    for c in ("model", "AUC", "NDCG@10 per profile", "profiles"):
        table.add_column(c, justify="left" if c == "model" else "right")
    for r in rows:
        table.add_row(r["model"], fmt(*r["auc"]), fmt(*r["ndcg@10"]), str(r["profiles"]))
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    seconds = time.perf_counter() - t0
    md = [f"# Audio: liking of held-out Emotify clips by listener context (seeds {args.seeds}, "
          f"{seconds:.0f} s)", "", "| model | AUC | NDCG@10 per profile | profiles |", "|---|---:|---:|---:|"]
    md += [f"| {r['model']} | {fmt(*r['auc'])} | {fmt(*r['ndcg@10'])} | {r['profiles']} |" for r in rows]
    md += ["", "Paired over listener profiles (pooled over seeds), NDCG@10:", "",
           "| model | against | Δ | 95% CI | per seed | p (t) | p (sign) |", "|---|---|---:|---|---:|---:|---:|"]
    md += [f"| {c['model']} | {c['against']} | {c['diff']:+.4f} | [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | "
           f"{fmt(c['seed_diff_mean'], c['seed_diff_std'])} | {fmt_p(c['p_ttest'])} | {fmt_p(c['p_sign'])} |"
           for c in compared]
    write_result(RESULTS, "audio", json.loads(json.dumps({"seeds": args.seeds, "seconds": round(seconds, 1), "rows": rows,
                                                          "runs": runs, "paired": compared}, default=float)),
                 "\n".join(md) + "\n")
    console.print(f"wrote {RESULTS / 'audio.json'} and .md")


if __name__ == "__main__":
    main()
