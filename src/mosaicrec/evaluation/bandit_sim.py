"""Bandit policies played against a simulator whose reward probabilities are known: cumulative-reward
curves of each policy beside random choice and a greedy (no exploration) one.

An environment has items with feature vectors, a pool of real contexts (one is drawn per round, with the
items it may be shown: e.g. the clips of the genre a listener chose) and the true probability that an item
is liked in a context. A policy sees only the item vectors and the context features, picks ``k`` items,
receives Bernoulli rewards and learns (:class:`~mosaicrec.ranking.bandits.LinearBandit`). Regret is taken
against the best ``k`` items by the true probabilities in each round.

``emotify_environment`` builds one from Emotify: contexts are the listeners' (age band, gender, mother
tongue, genre), the items' vectors their audio embeddings (PCA to ``dims``), and the truth each clip's like
rate among listeners of the same mother tongue, shrunk towards the clip's overall rate and that towards
its genre's: a semi-synthetic simulator, faithful to the logged rates where data is plentiful.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mosaicrec.errors import ConfigError
from mosaicrec.ranking.bandits import BanditConfig, LinearBandit, features


@dataclass(frozen=True)
class BanditEnvironment:
    items: np.ndarray      # n_items × d feature vectors
    contexts: np.ndarray   # n_contexts × c features
    arms: list[np.ndarray]  # per context: the item indices it may be shown
    truth: np.ndarray      # n_contexts × n_items: probability of a reward (only arms are read)


def simulate(env: BanditEnvironment, policies: dict[str, BanditConfig | None], rounds: int = 5000, k: int = 1,
             seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Play each policy (None: random choice) for ``rounds`` rounds on the same sequence of contexts and
    the same reward draws. Returns per policy the cumulative reward and cumulative regret per round."""
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(env.contexts), rounds)
    draws = rng.random((rounds, max(len(a) for a in env.arms)))  # one uniform per (round, arm position)
    out = {}
    for name, config in policies.items():
        bandit = None if config is None else LinearBandit(
            env.items.shape[1] * (env.contexts.shape[1] + 1), config, seed=seed)
        pick = np.random.default_rng(seed + 1)
        reward, regret = np.zeros(rounds), np.zeros(rounds)
        for t, c in enumerate(order):
            arms = env.arms[c]
            p = env.truth[c, arms]
            if bandit is None:
                chosen = pick.choice(len(arms), min(k, len(arms)), replace=False)
            else:
                phi = features(env.items[arms], env.contexts[c])
                chosen = bandit.select(phi, min(k, len(arms))).items
            r = (draws[t, chosen] < p[chosen]).astype(np.float64)
            if bandit is not None:
                bandit.update(phi[chosen], r)
            reward[t] = r.sum()
            regret[t] = np.sort(p)[::-1][:len(chosen)].sum() - p[chosen].sum()
        out[name] = {"reward": np.cumsum(reward), "regret": np.cumsum(regret)}
    return out


DEFAULT_POLICIES: dict[str, BanditConfig | None] = {
    "random": None,
    "greedy": BanditConfig(policy="epsilon-greedy", epsilon=0.0),
    "epsilon-greedy (0.1)": BanditConfig(policy="epsilon-greedy", epsilon=0.1),
    "linucb": BanditConfig(policy="linucb", alpha=0.5),
    "thompson": BanditConfig(policy="thompson", v=0.3, propensity_samples=10),
}


class BanditRunConfig(BaseModel):
    """A bandit simulation run (``mosaicrec bandits --config FILE``): the simulator, rounds, seeds and the
    policies by label; ``"random"`` is uniform choice, anything else a
    :class:`~mosaicrec.ranking.bandits.BanditConfig` table (``policy``, ``epsilon``, ``alpha``, ``v``…)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("bandits", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="report file stem")
    environment: str = Field("emotify", pattern="^emotify$", description="the simulator (emotify)")
    rounds: int = Field(5000, ge=100, le=1_000_000)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=100)
    dims: int = Field(8, ge=1, le=64, description="audio embedding PCA width")
    policies: dict[str, BanditConfig | None] = Field(default_factory=lambda: dict(DEFAULT_POLICIES),
                                                     min_length=1, max_length=50)

    @field_validator("policies", mode="before")
    @classmethod
    def _random(cls, v):
        if isinstance(v, dict):
            return {k: (None if p == "random" else p) for k, p in v.items()}
        return v


def load_bandit_config(path: str | Path) -> BanditRunConfig:
    """A bandit run from a TOML file; errors name the file and the field."""
    import tomllib

    from pydantic import ValidationError

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no bandit config at {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return BanditRunConfig(**raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {where}: {err['msg']}") from None


def shrunk_rates(frame, item: str, group: str, context: str, reward: str = "liked", prior: float = 5.0):
    """Reward rates with ``prior`` pseudo-rows of shrinkage, from a frame of responses: each group's mean;
    each item's rate towards its group's (``item`` → rate); each (context, item) rate towards the item's
    (a Series on that pair). Few responses say little: a clip liked 2 times of 3 is not a 67% clip."""
    group_rate = frame.groupby(group)[reward].mean()
    per_item = frame.groupby(item).agg(s=(reward, "sum"), n=(reward, "size"), g=(group, "first"))
    item_rate = (per_item["s"] + prior * group_rate[per_item["g"]].to_numpy()) / (per_item["n"] + prior)
    per_ctx = frame.groupby([context, item])[reward].agg(["sum", "size"])
    base = item_rate.reindex(per_ctx.index.get_level_values(item)).to_numpy()
    ctx_rate = (per_ctx["sum"] + prior * base) / (per_ctx["size"] + prior)
    return group_rate, item_rate, ctx_rate


def emotify_environment(responses, item_vectors: np.ndarray, item_ids: np.ndarray, dims: int = 8,
                        prior: float = 5.0) -> BanditEnvironment:
    """``responses``: a frame with ``item_id``, ``genre``, ``liked`` (0/1), ``age``, ``gender``,
    ``tongue``; ``item_vectors``: each item's audio embedding (rows of ``item_ids``)."""
    from sklearn.decomposition import PCA

    ids = [str(i) for i in item_ids]
    index = {i: n for n, i in enumerate(ids)}
    vecs = PCA(dims, random_state=0).fit_transform(np.asarray(item_vectors, np.float64))
    # rounded: the embeddings differ in their last bits from one CPU to another (the audio model's kernels),
    # and a bandit amplifies the smallest difference into another run; at 3 decimals every machine plays
    # the same game (a value within 1e-6 of a rounding boundary is the rare exception)
    vecs = np.round(vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12), 3)
    r = responses.assign(item=responses["item_id"].astype(str).map(index))
    if r["item"].isna().any():
        raise ValueError("emotify_environment: a response names an item without a vector")
    r["item"] = r["item"].astype(int)
    genre_rate, item_rate, tongue_rate = shrunk_rates(r, "item", "genre", "tongue", prior=prior)
    tongues = sorted(r["tongue"].unique())
    truth_t = np.tile(item_rate.reindex(range(len(ids))).fillna(genre_rate.mean()).to_numpy(), (len(tongues), 1))
    for (tg, item), rate in tongue_rate.items():
        truth_t[tongues.index(tg), item] = rate
    ctx_cols = ["age", "gender", "tongue", "genre"]
    pool = r[ctx_cols].drop_duplicates().reset_index(drop=True)
    ages, genders = sorted(pool["age"].unique()), sorted(pool["gender"].unique())
    contexts = np.array([[a == x for x in ages] + [g == x for x in genders] + [t == x for x in tongues]
                         for a, g, t in zip(pool["age"], pool["gender"], pool["tongue"])], np.float64)
    genre_items = {g: np.sort(r.loc[r["genre"] == g, "item"].unique()) for g in r["genre"].unique()}
    arms = [genre_items[g] for g in pool["genre"]]
    truth = truth_t[[tongues.index(t) for t in pool["tongue"]]]
    # contexts are drawn in proportion to how often they occur in the log
    weights = r.groupby(ctx_cols).size().reindex(_multi_index(pool, ctx_cols)).to_numpy()
    rows = np.repeat(np.arange(len(pool)), weights)
    return BanditEnvironment(vecs, contexts[rows], [arms[i] for i in rows], truth[rows])


def _multi_index(frame, cols):
    import pandas as pd

    return pd.MultiIndex.from_frame(frame[cols])


def emotify_from_dataset(data, audio: np.ndarray, dims: int = 8) -> BanditEnvironment:
    """The Emotify simulator from the ``emotify`` dataset and its clips' audio vectors (rows aligned to
    ``data.interactions.item_ids``): listener age banded (<25, 25-40, >40), mother tongue grouped
    (English, Russian, Dutch, other)."""
    import pandas as pd

    x = data.interactions
    genre_of = dict(zip(data.items["item_id"].astype(str), [a.get("genre") for a in data.items["attributes"]]))
    for col in ("listener_age", "listener_gender", "listener_mother_tongue"):
        if col not in x.context:
            raise ValueError(f"emotify_from_dataset: the events lack {col!r}; is this the emotify dataset?")
    age = pd.to_numeric(pd.Series(x.context["listener_age"]), errors="coerce")
    tongue = pd.Series(x.context["listener_mother_tongue"]).astype(str)
    responses = pd.DataFrame({
        "item_id": x.item_ids[x.items].astype(str), "liked": (x.weights > 0).astype(float),
        "genre": [genre_of[str(i)] for i in x.item_ids[x.items]],
        "age": pd.cut(age, [0, 24, 40, 200], labels=["<25", "25-40", ">40"]).astype(str),
        "gender": pd.Series(x.context["listener_gender"]).astype(str),
        "tongue": tongue.where(tongue.isin(["English", "Russian", "Dutch"]), "other")})
    return emotify_environment(responses, audio, x.item_ids, dims)


def run_seeds(env: BanditEnvironment, seeds: list[int], rounds: int,
              policies: dict[str, BanditConfig | None] | None = None,
              on_seed=None) -> dict[str, list[dict[str, np.ndarray]]]:
    """:func:`simulate` once per seed; ``on_seed(seed, runs)`` hears each seed's results."""
    curves: dict[str, list[dict[str, np.ndarray]]] = {}
    for seed in seeds:
        runs = simulate(env, policies or DEFAULT_POLICIES, rounds, seed=seed)
        for name, run in runs.items():
            curves.setdefault(name, []).append(run)
        if on_seed is not None:
            on_seed(seed, runs)
    return curves


def summarise(curves: dict[str, list[dict[str, np.ndarray]]], last: int = 1000) -> list[dict[str, float]]:
    """Per policy, mean and std over seeds of the like rate (all rounds, and the ``last`` ones) and the
    cumulative regret, and the like rate over random's where a ``random`` policy ran."""
    def ms(v: list[float]) -> tuple[float, float]:
        return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0

    rows = []
    for name, runs in curves.items():
        rounds = len(runs[0]["reward"])
        tail = min(last, rounds)
        before = [r["reward"][rounds - tail - 1] if tail < rounds else 0.0 for r in runs]
        rate, rate_std = ms([r["reward"][-1] / rounds for r in runs])
        late, late_std = ms([(r["reward"][-1] - b) / tail for r, b in zip(runs, before)])
        regret, regret_std = ms([float(r["regret"][-1]) for r in runs])
        rows.append({"policy": name, "rounds": rounds, "last": tail, "like_rate": rate, "like_rate_std": rate_std,
                     "late_like_rate": late, "late_std": late_std, "regret": regret, "regret_std": regret_std})
    base = next((r["like_rate"] for r in rows if r["policy"] == "random"), None)
    for r in rows:
        r["vs_random"] = r["like_rate"] / base if base else float("nan")
    return rows


def write_report(curves: dict[str, list[dict[str, np.ndarray]]], folder, stem: str, title: str,
                 seconds: float) -> str:
    """``<stem>.json`` (summary and curves every 50 rounds), ``<stem>.md`` (the table) and ``<stem>.png``
    (cumulative like rate, mean ± std over seeds) in ``folder``; returns the table."""
    from pathlib import Path

    from mosaicrec.evaluation.stats import fmt

    from mosaicrec.evaluation.provenance import write_result

    folder = Path(folder)
    rows = summarise(curves)
    n_seeds = len(next(iter(curves.values())))
    last = rows[0]["last"]
    lines = [f"{title}: {rows[0]['rounds']:,} rounds, {n_seeds} seed(s) (mean ± std).", "",
             f"| policy | like rate | last {last:,} rounds | regret (likes lost to the best item) | vs random |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['policy']} | {fmt(r['like_rate'], r['like_rate_std'])} | "
                     f"{fmt(r['late_like_rate'], r['late_std'])} | {fmt(r['regret'], r['regret_std'], 1)} | "
                     f"{r['vs_random']:.2f} |")
    table = "\n".join(lines) + "\n"
    write_result(folder, stem, {"rows": rows, "seconds": seconds, "curves": {
        n: [r["reward"][::50].tolist() for r in runs] for n, runs in curves.items()}}, table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, runs in curves.items():
        steps = np.arange(1, len(runs[0]["reward"]) + 1)
        rate = np.array([r["reward"] / steps for r in runs])
        ax.plot(steps, rate.mean(0), label=name)
        ax.fill_between(steps, rate.mean(0) - rate.std(0), rate.mean(0) + rate.std(0), alpha=0.2)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative like rate")
    ax.set_title(f"{title} (mean ± std over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / f"{stem}.png", dpi=120)
    plt.close(fig)
    return table


def emotify_simulator(dims: int = 8, console=None) -> BanditEnvironment:
    """The Emotify simulator from the built-in dataset, its clips' YAMNet vectors read through the
    embedding cache (encoded once)."""
    from mosaicrec.data import load_dataset
    from mosaicrec.encoders import ContentConfig, encode_content  # evaluation sits above encoders

    data = load_dataset("emotify")
    content = encode_content(data.items, ContentConfig(encoders={"yamnet": "yamnet"}), console=console).content
    return emotify_from_dataset(data, content.align(data.interactions.item_ids).features["yamnet"], dims)


def run_emotify(seeds: list[int], rounds: int, folder, stem: str = "bandits", console=None,
                config: BanditRunConfig | None = None) -> str:
    """The whole Emotify simulation: the dataset, its clips' YAMNet vectors (through the embedding cache),
    each policy per seed, and the report (:func:`write_report`); returns the table. ``config`` gives the
    policies and the PCA width (default: :data:`DEFAULT_POLICIES`, 8 dims)."""
    import time

    cfg = config or BanditRunConfig(rounds=rounds, seeds=seeds, name=stem)
    t0 = time.perf_counter()
    env = emotify_simulator(cfg.dims, console)

    def said(seed: int, runs: dict) -> None:
        if console is not None:
            console.print(f"seed {seed}: " + "; ".join(f"{n} {r['reward'][-1] / rounds:.3f}"
                                                        for n, r in runs.items()))

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # one BLAS thread: the same sums in the same order on any machine
        curves = run_seeds(env, seeds, rounds, cfg.policies, on_seed=said)
    return write_report(curves, folder, stem, "Bandit policies on the Emotify simulator", time.perf_counter() - t0)
