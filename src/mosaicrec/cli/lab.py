"""Commands that measure: evaluate, bandits, off-policy evaluation, the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from mosaicrec.cli import OutFolder, Seeds, StoreOpt, _opt, _say, _table, app, err, out
from mosaicrec.errors import MosaicError


@app.command()
def evaluate(
    config: Annotated[Path, typer.Argument(help="experiment TOML file")],
    output: Annotated[Optional[Path], _opt("report folder [default: <output_dir>/<name>-<time>]", "--out")] = None,
) -> None:
    """Run an experiment from a config file: table, results JSON, markdown report and plot."""
    from mosaicrec.config import load_config

    _show_run(_run_config(load_config(config), output))


def _run_config(cfg, output: Path | None, **kw):
    from mosaicrec.app.experiment import run_config

    return run_config(cfg, output, console=err, **kw)


def _show_run(run) -> None:
    from mosaicrec.evaluation.report import results_table

    if run.transfer:
        out.print(run.report.read_text(), markup=False, highlight=False)
    else:
        out.print(results_table(run.result))
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
    threshold: Annotated[Optional[float], _opt("reward = an attributed event of at least this weight [default: the "
                                               "first model's like threshold, else 1]")] = None,
    policy: Annotated[Optional[str], _opt("only the lists this logging policy chose (e.g. bandit:epsilon-greedy)")]
        = None,
    since: Annotated[Optional[float], _opt("only lists served from this Unix time on")] = None,
    boot: Annotated[int, _opt("bootstrap resamples", min=0, max=10_000)] = 200,
    output: Annotated[Optional[Path], _opt("write the estimates as JSON here", "--out")] = None,
) -> None:
    """Off-policy evaluation on the service's impression log: each target model's value per shown slot
    (replay, IPS, self-normalised IPS, doubly robust; 95% bootstrap intervals), its lists made by the
    serving pipeline for each user as they were when the logged list was served."""
    import json

    from mosaicrec.app.ope import evaluate_targets

    with err.status("making each target's lists for the logged rounds"):
        found = evaluate_targets(model, store, threshold=threshold, policy=policy, since=since, boot=boot)
    log = found.log
    table = Table(title=f"off-policy value per shown slot: {found.lists:,} lists, {len(log):,} shown items, "
                        f"logged value {log['reward'].mean():.4f}")
    for col in ("target", "lists", "overlap", "replay", "ips", "snips", "dr"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for ev in found.targets:
        cells = [f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}]" for e in
                 (ev.estimates.get(n) for n in ("replay", "ips", "snips", "dr")) if e is not None]
        cold = f" ({ev.cold_rounds:,} cold start)" if ev.cold_rounds else ""
        table.add_row(ev.target, f"{ev.rounds:,}{cold}", f"{ev.overlap:.3f}", *cells)
    out.print(table)
    _say(f"rows logged with propensity < 1: {found.stochastic_rows:.0%} (only these let a target be credited for "
         "items the logger would not have shown itself)")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"threshold": found.threshold, "policy": policy, "since": since,
                                      "targets": [t.to_dict() for t in found.targets]}, indent=2))
        _say(f"estimates: {output}")


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
