"""Reports of an experiment: a rich table for the terminal, results JSON, a markdown report and a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.table import Table

from mosaicrec.evaluation.runner import ExperimentResult
from mosaicrec.evaluation.stats import fmt, fmt_p

HEADLINE = ("ndcg@10", "recall@10", "precision@10", "map@10", "mrr@10", "hitrate@10", "coverage@10",
            "novelty@10", "diversity@10", "rmse", "mae")
#: with cold-start scenarios the table gets narrower: these, warm then per scenario (diversity warm only)
COLD_HEADLINE = ("ndcg@10", "recall@20")
WARM_EXTRA = ("diversity@10",)


def _flat(r) -> dict[str, float]:
    """A row's metrics with cold-start ones prefixed by their scenario ("new items: ndcg@10")."""
    return {**r.metrics, **{f"{sc}: {k}": v for sc, m in r.cold.items() for k, v in m.items()}}


def _flat_std(r) -> dict[str, float]:
    return {**r.std, **{f"{sc}: {k}": v for sc, m in r.cold_std.items() for k, v in m.items()}}


def _cell(r, c: str, seeds: int) -> str:
    v = _flat(r).get(c)
    if v is None:
        return "—"
    return fmt(v, _flat_std(r).get(c) if seeds > 1 else None)


def _labels(result: ExperimentResult) -> list[str]:
    return list(result.config.get("evaluation", {}).get("labels", []))


def _present(result: ExperimentResult) -> set[str]:
    """Every metric some row of the result has."""
    return {k for r in result.rows for k in _flat(r)}


def _columns(result: ExperimentResult) -> list[str]:
    present = _present(result)
    labels = _labels(result)
    if labels:  # impression experiments: the labels' AUC / GAUC, then the full-catalogue ranking
        return [c for c in [*(f"{lb} {m}" for lb in labels for m in ("auc", "gauc", "corr", "gcorr")), "ndcg@10",
                            "recall@10"] if c in present]
    scenarios = sorted({sc for r in result.rows for sc in r.cold})
    if scenarios:
        return [c for c in [*COLD_HEADLINE, *WARM_EXTRA, *(f"{sc}: {k}" for sc in scenarios for k in COLD_HEADLINE)]
                if c in present]
    return [c for c in HEADLINE if c in present]


def results_table(result: ExperimentResult) -> Table:
    """The headline metrics per model, best value of each column in bold."""
    cols = _columns(result)
    n_seeds = len(result.seeds) or 1
    table = Table(title=f"{result.name}: {result.dataset['dataset']} "
                        f"({result.split['kind']} split, {result.split.get('users_evaluated', 0)} users"
                        + (f"; mean ± std over {n_seeds} seeds" if n_seeds > 1 else "") + ")")
    table.add_column("model", style="cyan")
    for c in cols:
        table.add_column(c, justify="right")
    table.add_column("fit s", justify="right")
    best = {}
    for c in cols:
        vals = [_flat(r)[c] for r in result.rows if c in _flat(r)]
        best[c] = min(vals) if c in ("rmse", "mae") else max(vals)
    for r in result.rows:
        cells = []
        for c in cols:
            v = _flat(r).get(c)
            text = "" if v is None else _cell(r, c, n_seeds)
            cells.append(f"[bold]{text}[/bold]" if v is not None and v == best[c] else text)
        table.add_row(r.label, *cells, f"{r.fit_seconds:.2f}")
    return table


def markdown(result: ExperimentResult) -> str:
    cols = _columns(result)
    n_seeds = len(result.seeds) or 1
    lines = [f"# {result.name}", "",
             f"Dataset **{result.dataset['dataset']}**: {result.dataset['users']} users, "
             f"{result.dataset['items']} items, {result.dataset['events']} events. "
             f"Split: {result.split['kind']} ("
             + (f"seeds {', '.join(map(str, result.seeds))}: every figure is the mean ± std over them"
                if n_seeds > 1 else f"seed {result.split['seed']}") + ", rating threshold "
             f"{result.split.get('rating_threshold')}"
             + (", applied before splitting" if result.split.get("positives_first") else "") + "), "
             f"{result.split['train_events']} train / "
             f"{result.split['test_events']} test events, {result.split.get('users_evaluated', 0)} users "
             "evaluated by full ranking with their training items excluded"
             + (f" ({result.split['lists_evaluated']} lists: one per user and "
                f"{result.config.get('evaluation', {}).get('context')})." if "lists_evaluated" in result.split
                else "."), "",
             *[f"Scenario **{sc}**: {v['held_out']} held out whole, {v['train_events']} train / "
               f"{v['test_events']} test positives"
               + (" (every held-out item is a candidate, ranked among the held-out items only)." if sc == "new items" else
                  " (each shown to the model by its first events only; — : the model cannot fold users in).")
               for sc, v in result.split.get("cold_start", {}).items()], "",
             "| model | " + " | ".join(cols) + " | fit s | peak MB |",
             "|---|" + "---:|" * (len(cols) + 2)]
    for r in result.rows:
        vals = " | ".join(_cell(r, c, n_seeds) for c in cols)
        peak = "—" if r.peak_memory_mb != r.peak_memory_mb else f"{r.peak_memory_mb:.1f}"  # nan: not measured
        lines.append(f"| {r.label} | {vals} | {r.fit_seconds:.2f} | {peak} |")
    lines += _impressions_section(result)
    lines += _context_section(result)
    lines += _paired_section(result)
    lines += modality_section(result)
    lines += _tuning_section(result)
    lines += ["", "![metrics](plot.png)", "",
              f"Diversity (intra-list, @10) is measured over {result.split.get('diversity_vectors')}. Peak MB: "
              "the largest rise of the process's resident memory during the first seed's warm fit (what every "
              "allocator used, numba's and torch's included). Environment: "
              + ", ".join(f"{k} {v}" for k, v in result.environment.items()), ""]
    return "\n".join(lines)


def _impressions_section(result: ExperimentResult, most: int = 8) -> list[str]:
    """Per label: AUC, GAUC (a graded label: Spearman overall and per user) and NDCG@10 over the impressed
    items, overall and per context value."""
    labels = _labels(result)
    if not labels:
        return []
    n_seeds = len(result.seeds) or 1
    present = _present(result)
    cols = [f"{lb} {m}" for lb in labels for m in ("auc", "gauc", "corr", "gcorr", "indcg@10")
            if f"{lb} {m}" in present]
    lines = ["", "## Impressions: each feedback label", "",
             "AUC over all test impressions of users with a training event; GAUC: per-user AUC weighted by "
             "impressions; iNDCG@10: each user's impressed items (per context value) re-ranked by the model, "
             "the label as gain. A graded label (e.g. play time) has Spearman's correlation instead of AUC, "
             "overall (corr) and per user (gcorr), and log(1 + value) as gain. A multi-task model answers "
             "each label with its own head.", "",
             "| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in result.rows:
        lines.append(f"| {r.label} | " + " | ".join(_cell(r, c, n_seeds) for c in cols) + " |")
    rows = [r for r in result.rows if r.impressions]
    if rows:
        values = sorted(rows[0].impressions, key=lambda v: -rows[0].impressions[v].get("impressions", 0))[:most]
        context = result.config.get("evaluation", {}).get("context", "context")
        for lb in labels:
            per_user = next((m for m in ("gauc", "gcorr") if f"{lb} {m}" in present), None)
            if per_user is None:
                continue
            key = f"{lb} {per_user}"
            lines += ["", f"{lb} {per_user.upper()} by {context} (values with ≥ 200 scored test impressions):",
                      "", "| model | " + " | ".join(f"{v} ({rows[0].impressions[v]['impressions']:.0f})"
                                                  for v in values) + " |", "|---|" + "---:|" * len(values)]
            for r in rows:
                cells = [fmt(r.impressions[v][key], r.impressions_std[v].get(key) if n_seeds > 1 else None)
                         if v in r.impressions and key in r.impressions[v] else "—" for v in values]
                lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
    return lines


def _paired_section(result: ExperimentResult) -> list[str]:
    """Each model against the baseline, user by user, per scenario and metric."""
    rows = [r for r in result.rows if r.paired]
    if not rows:
        return []
    lines = ["", f"## Against {result.baseline} (paired by user, pooled over seeds)", "",
             "Δ is the mean per-user difference (model − baseline) with its 95% interval; the per-seed "
             "differences' mean ± std shows whether it holds in every seed; p: paired t-test / sign test.", "",
             "| model | scenario | metric | Δ | 95% CI | per seed | wins / losses | p (t) | p (sign) |",
             "|---|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        for scenario, by_metric in r.paired.items():
            for metric, d in by_metric.items():
                lines.append(f"| {r.label} | {scenario} | {metric} | {d['diff']:+.4f} | [{d['ci_low']:+.4f}, "
                             f"{d['ci_high']:+.4f}] | {fmt(d['seed_diff_mean'], d['seed_diff_std'])} | "
                             f"{d['wins']} / {d['losses']} | {fmt_p(d['p_ttest'])} | {fmt_p(d['p_sign'])} |")
    return lines


def modality_section(result: ExperimentResult) -> list[str]:
    """What each modality is worth (an ``[ablation]``): per model and scenario, each modality's
    contribution with its paired 95% interval, largest first."""
    if not result.modalities:
        return []
    metric = result.modalities[0]["metric"]
    lines = ["", "## What each modality is worth (drop one, paired by user, pooled over seeds)", "",
             f"Contribution = {metric} of the model with every modality − {metric} of the same model without this "
             "one (trained and, with [tuning], tuned on validation without it), user by user on the same test "
             "users; an interval holding 0 means the modality changes nothing one can measure here.", "",
             "| model | scenario | modality | with | without | contribution [95% CI] | per seed | p (t) |",
             "|---|---|---|---:|---:|---|---:|---:|"]
    for r in sorted(result.modalities, key=lambda r: (r["model"], r["scenario"], -r["diff"])):
        lines.append(f"| {r['model']} | {r['scenario']} | {r['modality']} | {_num(r['with'])} | "
                     f"{_num(r['without'])} | {r['diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | "
                     f"{fmt(r['seed_diff_mean'], r['seed_diff_std'])} | {fmt_p(r['p_ttest'])} |")
    return lines


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def modality_table(result: ExperimentResult) -> Table | None:
    """The modalities' contributions for the terminal (``None`` without an ablation)."""
    if not result.modalities:
        return None
    table = Table(title=f"what each modality is worth ({result.modalities[0]['metric']}, with − without, "
                        "paired 95% CI)")
    for col in ("model", "scenario", "modality", "contribution", "95% CI"):
        table.add_column(col, justify="right" if col in ("contribution", "95% CI") else "left")
    for r in sorted(result.modalities, key=lambda r: (r["model"], r["scenario"], -r["diff"])):
        sure = r["ci_low"] > 0 or r["ci_high"] < 0
        cell = f"{r['diff']:+.4f}"
        table.add_row(r["model"], r["scenario"], r["modality"], f"[bold]{cell}[/bold]" if sure else cell,
                      f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]")
    return table


def _tuning_section(result: ExperimentResult) -> list[str]:
    """The hyper-parameters chosen on validation, per model, scenario and seed."""
    runs = [(r.label, run) for r in result.rows for run in r.runs if "chosen" in run]
    if not runs:
        return []
    tuning = result.split.get("tuning", {})
    lines = ["", "## Hyper-parameters chosen on validation", "",
             f"{tuning.get('method')} search maximising validation {tuning.get('metric')} "
             f"({tuning.get('trials')} trials per model, scenario and seed for optuna); the validation part is "
             "carved out of each training part by the same kind of split, and the test part is scored once, "
             "after the choice.", "",
             "A choice marked **edge** sits on an edge of its range or ordered grid (within 5% of its span): the "
             "search could not tell whether a value past it does better; widen the range (`[tuning.space]`) or "
             "let the search do it (`[tuning] widen = 2`). The spread is that of every completed trial's "
             "validation score (min / median / max): a best far above the median is one lucky trial. In the "
             "new-item and new-user scenarios the validation score is the mean over `cold_folds` pseudo-new "
             "folds (± their spread).", "",
             "| model | scenario | seed | chosen | validation | trials: min / median / max | trials (pruned) | "
             "tuning s |", "|---|---|---:|---|---:|---|---:|---:|"]
    flagged = []
    for label, run in runs:
        edges = run.get("edges") or {}
        chosen = ", ".join((f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}") + (" **edge**" if k in edges
                                                                                       else "")
                           for k, v in run["chosen"].items())
        sp = run.get("validation_spread") or {}
        spread = f"{sp['min']:.4f} / {sp['median']:.4f} / {sp['max']:.4f}" if sp else ""
        widened = f", widened {run['widened']}×" if run.get("widened") else ""
        folds = run.get("validation_folds") or []
        val = f"{run['validation']:.4f}" + (f" ± {float(np.std(folds)):.4f} ({len(folds)} folds)" if len(folds) > 1
                                            else "")
        lines.append(f"| {label} | {run['scenario']} | {run['seed']} | {chosen} | {val} | "
                     f"{spread} | {run['trials']} ({run['pruned']}{widened}) | {run['tuning_seconds']:.1f} |")
        flagged += [f"{label} ({run['scenario']}, seed {run['seed']}): {text}" for text in edges.values()]
    if flagged:
        lines += ["", f"**Not done tuning**: {len(flagged)} choice(s) on an edge:", "",
                  *[f"- {f}" for f in flagged]]
    return lines + _content_lines(runs)


def _content_lines(runs: list[tuple[str, dict]]) -> list[str]:
    """Which content sets paid on validation (tuning's pay-or-leave step), per model, scenario and seed."""
    judged = [(label, run) for label, run in runs if run.get("content")]
    if not judged:
        return []
    lines = ["", "**Content that pays or leaves**: after the search, each content set of a fused model stays only "
             "when its validation gain (with it − without it, fold by fold) exceeds that gain's spread across "
             "the folds; a set left out gets weight 0.", "",
             "| model | scenario | seed | stays | left out |", "|---|---|---:|---|---|"]
    for label, run in judged:
        cell = {True: [], False: []}
        for v in run["content"]:
            cell[v["kept"]].append(f"{v['modality']} ({v['gain']:+.4f} ± {v['spread']:.4f})")
        lines.append(f"| {label} | {run['scenario']} | {run['seed']} | {', '.join(cell[True]) or '—'} | "
                     f"{', '.join(cell[False]) or '—'} |")
    return lines


def _context_section(result: ExperimentResult, metric: str = "ndcg@10", most: int = 8) -> list[str]:
    """NDCG@10 of each model in each of the ``most`` largest context values (lists ranked there)."""
    rows = [r for r in result.rows if r.by_context]
    if not rows:
        return []
    values = list(rows[0].by_context)[:most]
    context = result.config.get("evaluation", {}).get("context", "context")
    lines = ["", f"{metric} by {context} (each list: one user in one {context}, ranked with it as the "
             f"request's context; the {len(values)} largest of {len(rows[0].by_context)} values):", "",
             "| model | " + " | ".join(f"{v} ({rows[0].by_context[v]['lists']} lists)" for v in values) + " |",
             "|---|" + "---:|" * len(values)]
    for r in rows:
        lines.append(f"| {r.label} | " + " | ".join(f"{r.by_context[v].get(metric, 0.0):.4f}"
                                                   if v in r.by_context else "—" for v in values) + " |")
    return lines


def plot_metrics(result: ExperimentResult) -> list[str]:
    """The ranking metrics the plot shows: the table's own first two (warm) columns."""
    warm = [c for c in _columns(result) if ":" not in c and "@" in c and not c.startswith(("diversity", "coverage",
                                                                                           "novelty"))]
    return warm[:2] or ["ndcg@10"]


def plot(result: ExperimentResult, path: Path) -> None:
    """The table's first two ranking metrics per model (bars, with the standard deviation over seeds as
    error bars when there are several) and NDCG at every cut-off (lines, likewise)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.label for r in result.rows]
    several = len(result.seeds) > 1
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    metrics = plot_metrics(result)
    width = 0.8 / len(metrics)
    xs = range(len(labels))
    for n, metric in enumerate(metrics):
        off = (n - (len(metrics) - 1) / 2) * width
        errors = [r.std.get(metric, 0.0) for r in result.rows] if several else None
        ax1.bar([x + off for x in xs], [r.metrics.get(metric, 0.0) for r in result.rows], width, yerr=errors,
                capsize=3, label=metric)
    ax1.set_xticks(list(xs), labels, rotation=30, ha="right")
    ax1.set_title("accuracy" + (f" (mean ± std over {len(result.seeds)} seeds)" if several else ""))
    ax1.legend()
    ks = sorted({int(k.split("@")[1]) for r in result.rows for k in r.metrics if k.startswith("ndcg@")})
    for r in result.rows:
        ax2.errorbar(ks, [r.metrics.get(f"ndcg@{k}", 0.0) for k in ks], marker="o", label=r.label, capsize=3,
                     yerr=[r.std.get(f"ndcg@{k}", 0.0) for k in ks] if several else None)
    ax2.set_xlabel("K")
    ax2.set_ylabel("NDCG@K")
    ax2.set_title("NDCG by cut-off")
    ax2.legend(fontsize=8)
    fig.suptitle(f"{result.name} on {result.dataset['dataset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tradeoff_plot(result: ExperimentResult, path: Path) -> bool:
    """Accuracy against diversity under MMR re-ranking, one line per model (λ from 1 down); ``False``
    when the run measured no trade-off."""
    rows = [r for r in result.rows if r.tradeoff]
    if not rows:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in rows:
        ax.plot([p["diversity@10"] for p in r.tradeoff], [p["ndcg@10"] for p in r.tradeoff], marker="o", label=r.label)
        ax.annotate(f"λ={r.tradeoff[-1]['lambda']:g}", (r.tradeoff[-1]["diversity@10"], r.tradeoff[-1]["ndcg@10"]),
                    fontsize=7)
    ax.set_xlabel("intra-list diversity@10")
    ax.set_ylabel("NDCG@10")
    ax.set_title("accuracy / diversity trade-off (MMR over fused content)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def docs_table(result: ExperimentResult) -> str:
    """The headline metrics per model (mean ± std over seeds) without the timings: the table the
    documentation shows, which a rerun of the same config reproduces to the printed digits."""
    cols = _columns(result)
    n_seeds = len(result.seeds) or 1
    lines = [f"{result.dataset['dataset']}, {result.split['kind']} split, "
             + (f"mean ± std over seeds {', '.join(map(str, result.seeds))}" if n_seeds > 1
                else f"seed {result.split['seed']}") + ".", "",
             "| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in result.rows:
        lines.append(f"| {r.label} | " + " | ".join(_cell(r, c, n_seeds) for c in cols) + " |")
    worth = modality_section(result)
    if worth:  # the contributions, in the same table file (its heading one level down)
        lines += ["", "#" + worth[1], *worth[2:]]
    return "\n".join(lines) + "\n"


def write_reports(result: ExperimentResult, out_dir: str | Path) -> Path:
    """Write ``results.json`` (with the documentation's table and where the run came from), ``report.md``
    and ``plot.png`` into ``out_dir``; returns the folder."""
    from mosaicrec.evaluation.provenance import provenance

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({**result.to_dict(), "table": docs_table(result),
                                                  "provenance": provenance()}, indent=2, default=str))
    md = markdown(result)
    if tradeoff_plot(result, out / "tradeoff.png"):
        md += "\n## Accuracy / diversity trade-off (MMR)\n\n![trade-off](tradeoff.png)\n\n" + "\n".join(
            f"- {r.label}: " + ", ".join(f"λ={p['lambda']:g}: NDCG {p['ndcg@10']:.3f} / diversity "
                                         f"{p['diversity@10']:.3f}" for p in r.tradeoff)
            for r in result.rows if r.tradeoff) + "\n"
    (out / "report.md").write_text(md)
    plot(result, out / "plot.png")
    return out
