"""Commands that measure: evaluate, bandits, off-policy evaluation, the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from mosaicrec.cli import OutFolder, Seeds, StoreOpt, _admin_key, _opt, _say, _table, app, err, out
from mosaicrec.errors import MosaicError


@app.command()
def evaluate(
    config: Annotated[Path, typer.Argument(help="experiment TOML file")],
    output: Annotated[Optional[Path], _opt("report folder [default: <output_dir>/<name>-<time>]", "--out")] = None,
    ablation: Annotated[bool, _opt("also run every content model without each of its modalities and report what "
                                   "each modality is worth (as an [ablation] section with its defaults)")] = False,
) -> None:
    """Run an experiment from a config file: table, results JSON, markdown report and plot."""
    from mosaicrec.config import load_config, with_ablation

    cfg = load_config(config)
    _show_run(_run_config(with_ablation(cfg) if ablation else cfg, output))


def _run_config(cfg, output: Path | None, **kw):
    from mosaicrec.app.experiment import run_config

    return run_config(cfg, output, console=err, **kw)


def _show_run(run) -> None:
    from mosaicrec.evaluation.report import modality_table, results_table

    if run.transfer:
        out.print(run.report.read_text(), markup=False, highlight=False)
    else:
        out.print(results_table(run.result))
        worth = modality_table(run.result)
        if worth is not None:
            out.print(worth)
    _say(run.files())


@app.command()
def bandits(
    config: Annotated[Optional[Path], _opt("a bandit run file (policies, rounds, seeds; "
                                           "src/mosaicrec/configs/bandits.toml)", "--config")] = None,
    rounds: Annotated[Optional[int], _opt("rounds per seed [default: the config's, else 5000]", min=100,
                                          max=1_000_000)] = None,
    seed: Seeds = None,
    output: OutFolder = Path("runs/bandits"),
) -> None:
    """Play bandit policies (random, greedy, ε-greedy, LinUCB, Thompson, or those of --config) on the
    Emotify simulator: cumulative-reward table, JSON and plot."""
    from mosaicrec.evaluation.bandit_sim import BanditRunConfig, load_bandit_config, run_emotify

    cfg = load_bandit_config(config) if config is not None else BanditRunConfig()
    cfg = cfg.model_copy(update={"rounds": rounds or cfg.rounds, "seeds": seed or cfg.seeds})
    out.print(run_emotify(cfg.seeds, cfg.rounds, output, cfg.name, err, config=cfg))
    _say(f"report: {output}/{cfg.name}.md  plot: {output}/{cfg.name}.png")


@app.command()
def ope(
    model: Annotated[list[Path], _opt("a target: folder written by `mosaicrec train` (repeatable)", "--model")],
    store: StoreOpt = None,
    server: Annotated[Optional[str], _opt("a running service that holds the store: read a snapshot it writes "
                                          "(POST /admin/snapshot), e.g. http://127.0.0.1:8000")] = None,
    api_key_file: Annotated[Optional[Path], _opt("with --server: file holding an admin key (KEY:admin) [default: "
                                                 "$MOSAICREC_API_KEYS]")] = None,
    threshold: Annotated[Optional[float], _opt("reward = an attributed event of at least this weight [default: the "
                                               "first model's like threshold, else 1]")] = None,
    policy: Annotated[Optional[str], _opt("only the lists this logging policy chose (e.g. explore:epsilon-greedy)")]
        = None,
    since: Annotated[Optional[float], _opt("only lists served from this Unix time on")] = None,
    boot: Annotated[int, _opt("bootstrap resamples", min=0, max=10_000)] = 200,
    min_support: Annotated[float, _opt("refuse an estimator when less than this share of the target's slots was "
                                       "possible under the logger", min=0.0, max=1.0)] = 0.95,
    min_ess: Annotated[float, _opt("refuse an estimator whose effective sample size is below this", min=0.0)]
        = 50.0,
    rank_by: Annotated[str, _opt("the estimator the targets are ranked by (pbm-dr: true order and every truth "
                                 "covered in every closed-loop benchmark run)")] = "pbm-dr",
    output: Annotated[Optional[Path], _opt("write the estimates as JSON here", "--out")] = None,
) -> None:
    """Off-policy evaluation on the service's impression log: each target model's value per shown slot by
    the slate estimators (per-position IPS, SNIPS and doubly robust; the same under a position-based model;
    the pseudo-inverse), with 95% bootstrap intervals and effective sample sizes. A target the log cannot
    support (a deterministic logger, too few matching rows) is refused with the reason, not given a number."""
    import json

    from mosaicrec.app.ope import evaluate_targets
    from mosaicrec.evaluation.slates import ESTIMATORS

    if rank_by not in ESTIMATORS:
        raise MosaicError(f"--rank-by must be one of {', '.join(ESTIMATORS)}, not {rank_by!r}")
    admin = _admin_key(server, api_key_file, "ope --server") if server is not None else None
    with err.status("making each target's lists for the logged rounds"):
        found = evaluate_targets(model, store, threshold=threshold, policy=policy, since=since, boot=boot,
                                 server=server, admin_key=admin, min_support=min_support, min_ess=min_ess)
    _print_ope(found, rank_by)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"policy": policy, "since": since, "rank_by": rank_by, **found.to_dict()},
                                     indent=2))
        _say(f"estimates: {output}")


def _print_ope(found, rank_by: str) -> None:
    """The log, its self-check, each target's estimates or the reasons they are refused, and the order."""
    from mosaicrec.evaluation.slates import ESTIMATORS

    log = found.log
    kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(found.kinds.items()))
    _say(f"log: {found.lists:,} lists ({kinds}), {len(log):,} shown items, logged value per slot "
         f"{log['reward'].mean():.4f}")
    theta = " ".join(f"{t:.2f}" for t in found.theta[:10])
    _say(f"examination by position (pbm): {theta}" + (" (from the uniformly random lists)" if found.theta_estimated
                                                     else " (assumed equal: too few uniformly random lists)"))
    check = found.logger
    failed = check.failed
    shown = check.estimates.get("ips") or next(iter(check.estimates.values()), None)
    _say("self-check: the logging policy as a target " + (
        f"finds its logged value {check.logged_value:.4f} inside every interval" if not failed else
        f"[red]FAILS[/red] on {', '.join(failed)} (logged value {check.logged_value:.4f}; the log's propensities "
        "or draws are wrong: do not act on these estimates)")
        + (f"; logged propensities equal the recomputed ones (largest gap {check.propensity_mismatch:.1e})"
           if check.propensity_mismatch == check.propensity_mismatch else "")
        + (f"; e.g. ips {shown.value:.4f} [{shown.low:.4f}, {shown.high:.4f}]" if shown is not None else ""))
    table = Table(title="off-policy value per shown slot: value [95% interval] (effective sample size)")
    table.add_column("target")
    table.add_column("support", justify="right")
    for name in ESTIMATORS:
        table.add_column(name, justify="right")
    for ev in found.targets:
        cells = []
        for name in ESTIMATORS:
            e = ev.estimates.get(name)
            cells.append(f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}] ({e.ess:,.0f})" if e is not None
                         else "refused")
        table.add_row(ev.target, f"{ev.support:.0%} / pbm {ev.support_pbm:.0%}", *cells)
    out.print(table)
    for ev in found.targets:
        by_reason: dict[str, list[str]] = {}
        for name, why in ev.refused.items():
            by_reason.setdefault(why, []).append(name)
        for why, names in by_reason.items():
            _say(f"{ev.target}: {', '.join(names)} cannot be estimated: {why}")
    ranked = [(ev.estimates[rank_by], ev.target) for ev in found.targets if rank_by in ev.estimates]
    if ranked:
        ranked.sort(key=lambda p: -p[0].value)
        order = " > ".join(f"{t} {e.value:.4f}" for e, t in ranked)
        apart = all(a.low > b.high for (a, _), (b, _) in zip(ranked, ranked[1:]))
        _say(f"by {rank_by}: {order}" + ("" if apart or len(ranked) < 2 else
                                         " (neighbouring intervals overlap: the order is not certain)"))
    else:
        _say(f"no target could be estimated by {rank_by}")


@app.command("ope-table")
def ope_table(
    which: Annotated[str, typer.Argument(help="simulation | emotify | kuairand")],
    seed: Seeds = None,
    replications: Annotated[int, _opt("simulation: simulated logs", min=2, max=100_000)] = 200,
    top: Annotated[int, _opt("kuairand: the popular / BPR lists' length", min=1, max=10_000)] = 50,
    output: OutFolder = Path("runs/ope"),
) -> None:
    """An off-policy evaluation table: the estimators on simulated logs with a known truth (bias, spread,
    RMSE), or policies estimated on Emotify's responses or KuaiRand's impressions with an estimated logger.
    Writes ope_<which>.json and .md."""
    from mosaicrec.evaluation import ope_tables

    if which not in ope_tables.TABLES:
        raise MosaicError(f"unknown table {which!r}; choose from {', '.join(ope_tables.TABLES)}")
    seeds = seed or [0, 1, 2]
    payload, table = (ope_tables.simulation_table(replications, err) if which == "simulation" else
                      ope_tables.emotify_table(seeds, err) if which == "emotify" else
                      ope_tables.kuairand_table(seeds, top, err))
    report = ope_tables.write_table(output, which, payload, table)
    out.print(table, highlight=False)
    _say(f"report: {report}")


@app.command()
def demo(
    dataset: Annotated[Optional[str], _opt("built-in dataset [default: ml100k-multimodal when ../shared is "
                                           "there, else movielens-100k]")] = None,
    store: StoreOpt = None,
    output: Annotated[Optional[Path], _opt("report folder", "--out")] = None,
) -> None:
    """Ingest a real dataset into the store, evaluate six models, show a user's recommendations, encode the
    content and show nearest neighbours, then the multimodal models and cold start."""
    from mosaicrec.app.demo import demo_content, demo_experiment, demo_multimodal

    run = demo_experiment(dataset, store, output, console=err)
    _show_run(run.experiment)
    example = run.example
    _say(f"\nTop 5 from {run.best} (best NDCG@10) for user {example.user_id}, trained on the split's train part:")
    for rank, e in enumerate(example.items, 1):
        out.print(f"  {rank}. {e.title}  [dim](item {e.item_id}, score {e.score:.3f})[/dim]")
    _say("\nEncoding the content of the catalog (cached beside the store):")
    demo_content(run, store, console=err)
    for rep in run.encode_reports:
        _say("  " + rep.describe())
    for found in run.neighbours:
        _table(found.title, ["item", "its 3 nearest neighbours"], [list(r) for r in found.rows])
    if run.experiment.data.name == "ml100k-multimodal":
        _say("\nMultimodal models and cold start (content read back from the cache):")
        _show_run(demo_multimodal(run, store, output, console=err))
