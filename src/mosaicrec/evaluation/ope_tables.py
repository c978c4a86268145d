"""The off-policy evaluation tables: the estimators on simulated logs whose truth is known, and on two real
logs with an estimated logging policy (``mosaicrec ope-table``; ``benchmarks/ope_*.py`` write them to
``benchmarks/results``).

**simulation**: each replication draws a bandit problem (2,000 rounds, 10 actions, 5 context features,
Bernoulli rewards with logit x · θ_a) and a log from a logger: uniform, or a softmax over noisy true scores.
The target is ε-greedy on the true scores. Every estimator is scored against the true value: bias,
standard deviation and RMSE over the replications; DR's reward model is right or off by +0.2; the
baseline is the log's own mean reward.

**emotify**: arms are the clips of the genre the listener chose (100 each); the reward is "liked"; the
context is age band, gender and mother tongue. The logger is estimated from the counts, p̂(clip | genre) =
the clip's share of its genre's responses (the counts per clip are far from uniform). Per seed the
responses are halved at random: targets and the reward model are fitted on one half, evaluated on the
other. Policies: a random clip; the best shrunk like rate (greedy, popular); the best rate among listeners
of the same mother tongue (greedy, contextual); the estimated logger (its IPS value is the logged mean).

**kuairand**: the last fifth of the impressions (by time) is the log; the first four fifths train the
targets and the reward model. No logging probabilities are recorded and the slice has no random
exposures, so the logger is estimated as each video's share of its tab's impressions that day: its
marginal over users (the real logger is personal: these estimates rank policies under that assumption).
Arms are the videos that tab showed that day. Targets pick one uniformly among all arms (random), the
``top`` with the best training rate on the tab (popular), or the user's ``top`` best by BPR (one per
seed; users without training events get the popular ones); the estimated logger is the check. ESS, the
effective sample size (Σw)² / Σw², says how many rows an estimate rests on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from mosaicrec.data.datasets import load_dataset, resolve_source
from mosaicrec.data.splits import SplitConfig, split
from mosaicrec.evaluation.bandit_sim import shrunk_rates
from mosaicrec.evaluation.ope import BanditLog, bias_variance, epsilon_greedy_policy, evaluate_policy, synthetic_bandit
from mosaicrec.evaluation.provenance import write_result
from mosaicrec.evaluation.stats import fmt
from mosaicrec.models import create

TABLES = ("simulation", "emotify", "kuairand")
_EMOTIFY_PRIOR = 5.0
_KUAIRAND_PRIOR = 20.0
_KUAIRAND_LABELS = ("click", "long_view")


def write_table(folder: Path, which: str, payload: dict, table: str) -> Path:
    """``ope_<which>.json`` (the payload, the table and where it came from) and ``ope_<which>.md`` (the
    table) in ``folder``; returns the .md."""
    write_result(folder, f"ope_{which}", payload, table)
    return folder / f"ope_{which}.md"


def _say(console: Console | None) -> Callable[[str], None]:
    return (lambda msg: console.print(msg, highlight=False, soft_wrap=True)) if console is not None else \
        (lambda msg: None)


def simulation_table(replications: int = 200, console: Console | None = None) -> tuple[dict, str]:
    """Off-policy estimators against the true value on simulated logs (see the module): bias, std and RMSE
    per logger, target and estimator, beside the uncorrected logged mean. Returns (payload, markdown)."""
    t0 = time.perf_counter()
    rows = []
    for logging in ("uniform", "softmax"):
        for eps in (0.0, 0.1):
            for model_name, model in (("right", lambda p: p.mean), ("off by +0.2", lambda p: np.clip(p.mean + 0.2, 0, 1))):
                def make(seed: int, logging: str = logging):
                    return synthetic_bandit(2000, 10, 5, logging=logging, seed=seed)

                def policy(p, eps: float = eps):
                    return epsilon_greedy_policy(p.mean, eps)

                table = bias_variance(make, policy, replications, reward_model=model)
                naive = [make(s).log.rewards.mean() - make(s).true_value(policy(make(s)))
                         for s in range(replications)]
                table["logged mean (no correction)"] = {"bias": float(np.mean(naive)),
                                                        "std": float(np.std(naive, ddof=1)),
                                                        "rmse": float(np.sqrt(np.mean(np.square(naive)))),
                                                        "replications": len(naive)}
                for name, stats in table.items():
                    if name != "dr" and model_name != "right":
                        continue  # only dr reads the reward model: its other rows repeat the first block
                    rows.append({"logger": logging, "target": f"ε-greedy ε={eps:g}",
                                 "estimator": name if name != "dr" else f"dr (reward model {model_name})", **stats})
    seconds = time.perf_counter() - t0
    lines = [f"Off-policy estimators against the true value, {replications} simulated logs of 2,000 rounds "
             "each.", "",
             "| logger | target | estimator | bias | std | RMSE | RMSE / baseline's |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        base = next(b for b in rows if b["logger"] == r["logger"] and b["target"] == r["target"]
                    and b["estimator"].startswith("logged mean"))
        lines.append(f"| {r['logger']} | {r['target']} | {r['estimator']} | {r['bias']:+.4f} | {r['std']:.4f} | "
                     f"{r['rmse']:.4f} | {r['rmse'] / base['rmse']:.2f} |")
    return {"rows": rows, "seconds": seconds, "replications": replications}, "\n".join(lines) + "\n"


def _emotify_responses() -> pd.DataFrame:
    src = resolve_source("emotify")
    ev = pd.read_parquet(src.events)
    items = pd.read_csv(src.items, dtype={"item_id": str})
    ev = ev.merge(items[["item_id", "genre"]], on="item_id")
    tongue = ev["listener_mother_tongue"].where(ev["listener_mother_tongue"].isin(["English", "Russian", "Dutch"]),
                                                "other")
    return pd.DataFrame({"clip": ev["item_id"].astype(int), "genre": ev["genre"], "tongue": tongue,
                         "liked": (ev["event_type"] == "like").astype(float)})


def _emotify_rates(train: pd.DataFrame, clips: np.ndarray, genre_of: dict[int, str]) -> tuple[dict, dict]:
    """Shrunk like rates (the simulator's, :func:`shrunk_rates`): per clip (towards its genre; a clip
    without training responses has its genre's) and per (clip, tongue) (towards the clip)."""
    genre_rate, item_rate, tongue_rate = shrunk_rates(train, "clip", "genre", "tongue", prior=_EMOTIFY_PRIOR)
    clip_rate = {c: float(item_rate.get(c, genre_rate[genre_of[c]])) for c in clips}
    ctx_rate = {(c, tg): float(v) for (tg, c), v in tongue_rate.items()}
    return clip_rate, ctx_rate


def emotify_table(seeds: list[int], console: Console | None = None) -> tuple[dict, str]:
    """Emotify: the random, greedy and contextual-greedy clip policies estimated off-policy on held-out
    responses with the estimated logger (see the module). Returns (payload, markdown)."""
    say = _say(console)
    t0 = time.perf_counter()
    data = _emotify_responses()
    counts = data.groupby(["genre", "clip"]).size()
    share = (counts / counts.groupby("genre").transform("sum")).to_dict()
    logger = np.array([share[(g, c)] for g, c in zip(data["genre"], data["clip"])])
    by_genre = {g: np.array(sorted(data.loc[data["genre"] == g, "clip"].unique())) for g in data["genre"].unique()}
    genre_of = {int(c): g for g, cs in by_genre.items() for c in cs}
    presented = {g: {"responses": int(counts[g].sum()), "clips": int(len(counts[g])), "min": int(counts[g].min()),
                     "median": float(counts[g].median()), "max": int(counts[g].max())} for g in by_genre}
    say(f"responses per clip, by genre: {presented}")
    runs: dict[str, list[dict]] = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        test_mask = rng.random(len(data)) < 0.5
        train, test = data[~test_mask], data[test_mask].reset_index(drop=True)
        p_test = logger[test_mask]
        clip_rate, ctx_rate = _emotify_rates(train, np.concatenate(list(by_genre.values())), genre_of)
        log = BanditLog(test["clip"].to_numpy(), test["liked"].to_numpy(), p_test)

        def q(clip: int, tongue: str) -> float:
            return ctx_rate.get((clip, tongue), clip_rate[clip])

        # per test round: every clip of its genre, the reward model and each policy's distribution over them
        rows = {name: ([], [], []) for name in ("random", "greedy (popular)", "greedy (contextual)", "logging")}
        q_logged = np.array([q(c, tg) for c, tg in zip(test["clip"], test["tongue"])])
        for c, g, tg in zip(test["clip"], test["genre"], test["tongue"]):
            arms = by_genre[g]
            qs = np.array([q(a, tg) for a in arms])
            pop = np.array([clip_rate[a] for a in arms])
            at = int(np.searchsorted(arms, c))
            dists = {"random": np.full(len(arms), 1 / len(arms)),
                     "greedy (popular)": np.eye(len(arms))[np.argmax(pop)],
                     "greedy (contextual)": np.eye(len(arms))[np.argmax(qs)],
                     "logging": np.array([share[(g, a)] for a in arms])}
            for name, pi in dists.items():
                rows[name][0].append(pi[at])
                rows[name][1].append(float(pi @ qs))
                rows[name][2].append(arms[np.argmax(pi)] if pi.max() == 1 else -1)
        for name, (probs, q_target, actions) in rows.items():
            deterministic = name.startswith("greedy")
            est = evaluate_policy(log, target_probs=np.array(probs),
                                  target_actions=np.array(actions) if deterministic else None,
                                  q_logged=q_logged, q_target=np.array(q_target), n_boot=200, seed=seed)
            runs.setdefault(name, []).append({k: e.to_dict() for k, e in est.items()})
        say(f"seed {seed}: logged mean {test['liked'].mean():.4f}; "
              + "; ".join(f"{n} DR {runs[n][-1]['dr']['value']:.4f}" for n in rows))
    seconds = time.perf_counter() - t0
    names = ["replay", "ips", "snips", "dr"]
    lines = [f"Emotify: policies' like rate estimated off-policy from held-out responses, {len(seeds)} seeds "
             "(mean ± std of the estimate; [mean 95% bootstrap interval]).", "",
             "| policy | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, per_seed in runs.items():
        cells = []
        for e in names:
            got = [r[e] for r in per_seed if e in r]
            if not got:
                cells.append("—")
                continue
            v = [g["value"] for g in got]
            cells.append(f"{fmt(float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None)} "
                         f"[{np.mean([g['low'] for g in got]):.3f}, {np.mean([g['high'] for g in got]):.3f}]"
                         + (f" ({int(np.mean([g['rows'] for g in got]))} rows)" if e == "replay" else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    payload = {"presented": presented, "runs": runs, "seeds": seeds, "seconds": seconds}
    return payload, "\n".join(lines) + "\n"


def _kuairand_frame(x) -> pd.DataFrame:
    return pd.DataFrame({"user": x.users, "item": x.items, "ts": x.timestamps,
                         "tab": np.asarray(x.context["scenario"]).astype(str),
                         "day": pd.to_datetime(x.timestamps, unit="ms").strftime("%Y-%m-%d"),
                         **{lab: np.asarray(x.context[lab]).astype(int) for lab in _KUAIRAND_LABELS}})


def kuairand_table(seeds: list[int], top: int = 50, console: Console | None = None) -> tuple[dict, str]:
    """KuaiRand: random, popular-top and BPR-top policies estimated off-policy on the last fifth of the
    impressions with the estimated logger (see the module). Returns (payload, markdown)."""
    say = _say(console)
    t0 = time.perf_counter()
    data = load_dataset("kuairand")
    train_x, test_x = split(data.interactions, SplitConfig(kind="temporal", test_fraction=0.2))
    train, test = _kuairand_frame(train_x), _kuairand_frame(test_x)
    # the logger's estimate: each video's share of its (tab, day)'s impressions in the evaluated log
    counts = test.groupby(["tab", "day", "item"]).size()
    share = counts / counts.groupby(level=["tab", "day"]).transform("sum")
    test["p"] = share.reindex(pd.MultiIndex.from_frame(test[["tab", "day", "item"]])).to_numpy()
    arms = {k: g.index.get_level_values("item").to_numpy() for k, g in share.groupby(level=["tab", "day"])}
    arm_p = {k: g.to_numpy() for k, g in share.groupby(level=["tab", "day"])}
    sizes = np.array([len(a) for a in arms.values()])
    presented = {"rounds": int(len(test)), "tab_days": int(len(arms)), "arms_median": float(np.median(sizes)),
                 "arms_max": int(sizes.max()), "top_share_median": float(np.median([p.max() for p in arm_p.values()]))}
    say(f"evaluated log: {presented}")
    engaged = train_x.subset(train_x.weights >= 1)
    # one thread: BPR's Hogwild SGD is then exactly repeatable, and so is the table
    models = {seed: create("bpr", {"seed": seed, "num_threads": 1}).fit(engaged) for seed in seeds}
    runs: dict[str, dict[str, list[dict]]] = {}
    for label in _KUAIRAND_LABELS:
        train["all"] = "all"
        _, item_rate, tab_rate = shrunk_rates(train, "item", "all", "tab", reward=label, prior=_KUAIRAND_PRIOR)
        overall = float(train[label].mean())

        def q(tab: str, items: np.ndarray) -> np.ndarray:
            base = item_rate.reindex(items).fillna(overall).to_numpy()
            got = tab_rate.reindex(pd.MultiIndex.from_arrays([np.full(len(items), tab), items])).to_numpy()
            return np.where(np.isnan(got), base, got)

        rewards = test[label].to_numpy(np.float64)
        props = test["p"].to_numpy()
        log = BanditLog(test["item"].to_numpy(), rewards, props)
        q_logged = _q_rows(test, q)
        groups = test.groupby(["tab", "day"]).indices
        items_all = test["item"].to_numpy()
        q_arms = {k: q(k[0], a) for k, a in arms.items()}
        popular_top = {k: a[np.argsort(-q_arms[k], kind="stable")[:top]] for k, a in arms.items()}
        policies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        uniform, top_pop, logger = [(np.empty(len(test)), np.empty(len(test))) for _ in range(3)]
        for k, idx in groups.items():
            a, qa, best = arms[k], q_arms[k], popular_top[k]
            uniform[0][idx], uniform[1][idx] = 1.0 / len(a), qa.mean()
            top_pop[0][idx] = np.isin(items_all[idx], best) / len(best)
            top_pop[1][idx] = q(k[0], best).mean()
            logger[0][idx], logger[1][idx] = props[idx], arm_p[k] @ qa
        policies["random"] = uniform
        policies[f"popular (top {top})"] = top_pop
        policies["the estimated logger (check)"] = logger
        for seed in seeds:
            policies[f"BPR (top {top})|{seed}"] = _bpr_policy(models[seed], test, arms, popular_top, q, top)
            say(f"  {label}: BPR seed {seed} done")
        for name, (pi, q_target) in policies.items():
            est = evaluate_policy(log, target_probs=pi, q_logged=q_logged, q_target=q_target,
                                  estimators=("ips", "snips", "dr"), n_boot=200, seed=0)
            w = pi / props
            ess = float(w.sum() ** 2 / max((w ** 2).sum(), 1e-12))
            base = name.split("|")[0]
            runs.setdefault(label, {}).setdefault(base, []).append(
                {**{k: e.to_dict() for k, e in est.items()}, "ess": ess})
        say(f"{label}: logged mean {rewards.mean():.4f}; " + "; ".join(
            f"{n} SNIPS {v[-1]['snips']['value']:.4f} (ESS {v[-1]['ess']:.0f})" for n, v in runs[label].items()),
)
    seconds = time.perf_counter() - t0
    logged = {lab: float(test[lab].mean()) for lab in _KUAIRAND_LABELS}
    payload = {"presented": presented, "logged": logged, "runs": runs, "seeds": seeds, "seconds": seconds}
    return payload, kuairand_markdown(payload)


def kuairand_markdown(payload: dict) -> str:
    """The KuaiRand table of a payload written by :func:`kuairand_table`."""
    presented, logged, runs = payload["presented"], payload["logged"], payload["runs"]
    lines = [f"KuaiRand, last fifth of the impressions ({presented['rounds']:,}) evaluated off-policy with an "
             "estimated logger (each video's share of its tab's impressions that day). Mean ± std over the BPR "
             "seeds where there are several, [95% bootstrap interval], ESS = effective sample size.", ""]
    for lab in _KUAIRAND_LABELS:
        lines += [f"**{lab}** (logged mean {logged[lab]:.4f})", "",
                  "| policy | IPS | SNIPS | DR | ESS |", "|---|---:|---:|---:|---:|"]
        for name, rs in runs[lab].items():
            cells = []
            for e in ("ips", "snips", "dr"):
                v = [r[e]["value"] for r in rs]
                lo, hi = np.mean([r[e]["low"] for r in rs]), np.mean([r[e]["high"] for r in rs])
                cells.append(f"{fmt(float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None, 4)} "
                             f"[{lo:.4f}, {hi:.4f}]")
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean([r['ess'] for r in rs]):,.0f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _q_rows(test: pd.DataFrame, q) -> np.ndarray:
    out = np.empty(len(test))
    for tab, idx in test.groupby("tab").indices.items():
        out[idx] = q(tab, test["item"].to_numpy()[idx])
    return out


def _bpr_policy(model, test: pd.DataFrame, arms: dict, popular_top: dict, q, top: int):
    """Uniform over each user's ``top`` best arms by BPR (the popular policy for users BPR never saw)."""
    users = test["user"].to_numpy()
    known = np.diff(model._require_fitted().indptr)[users] > 0  # users with training positives
    items_all = test["item"].to_numpy()
    probs, qt = np.empty(len(test)), np.empty(len(test))
    for (tab, day), idx in test.groupby(["tab", "day"]).indices.items():
        a = arms[(tab, day)]  # sorted ids: the groupby that made them sorts
        qa = q(tab, a)
        pop = popular_top[(tab, day)]
        new, old = idx[~known[idx]], idx[known[idx]]
        probs[new] = np.isin(items_all[new], pop) / len(pop)
        qt[new] = q(tab, pop).mean()
        m = min(top, len(a))
        for s in range(0, len(old), 2048):  # users × arms scores, a block at a time
            rows = old[s:s + 2048]
            scores = model.score(users[rows], a)
            best = np.argpartition(-scores, m - 1, axis=1)[:, :m] if m < len(a) else \
                np.tile(np.arange(len(a)), (len(rows), 1))
            chosen = np.zeros(scores.shape, bool)
            np.put_along_axis(chosen, best, True, axis=1)
            pos = np.searchsorted(a, items_all[rows])
            probs[rows] = chosen[np.arange(len(rows)), pos] / m
            qt[rows] = (chosen * qa[None, :]).sum(axis=1) / m
    return probs, qt
