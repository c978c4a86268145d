"""Run an experiment config: load (or ingest and read back) its dataset, encode its content, run the
experiment or the transfer experiment it describes, and write the reports with the resolved config, so
that one command reproduces any table."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from mosaicrec.config import ExperimentConfig
from mosaicrec.data.datasets import load_dataset
from mosaicrec.data.schema import Dataset
from mosaicrec.data.store import Store
from mosaicrec.evaluation.report import write_reports
from mosaicrec.evaluation.runner import ExperimentResult, run_experiment


@dataclass
class ExperimentRun:
    """What a run wrote: its folder, the report to show, and the result (a transfer result for transfer
    experiments)."""

    folder: Path
    report: Path
    result: Any
    data: Dataset
    transfer: bool = False

    def files(self) -> str:
        extra = [f"plot: {p}" for p in (self.folder / "plot.png", self.folder / "transfer.png") if p.exists()]
        return "  ".join([f"report: {self.report}", f"results: {self.folder / 'results.json'}", *extra])


def load_experiment_data(cfg: ExperimentConfig, use_store: bool = False, console: Console | None = None):
    """The config's dataset (ingested into its store and read back when it names one, or ``use_store``) and
    its content (encoded through the cache when it has a ``[content]`` section)."""
    console = console or Console(stderr=True)
    source = cfg.dataset.name or cfg.dataset.source
    with console.status(f"loading {cfg.dataset.label()}"):
        if use_store or cfg.dataset.store:
            with Store(cfg.dataset.store) as st:
                data = load_dataset(source, store=st)
                console.print(f"store {st.path}: {st.counts()}")
        else:
            data = load_dataset(source)
    content = None
    if cfg.content is not None:
        from mosaicrec.encoders import encode_content

        encoded = encode_content(data.items, cfg.content, console=console)
        for rep in encoded.reports:
            console.print("  " + rep.describe(), soft_wrap=True, highlight=False)
        content = encoded.content
    return data, content


def run_config(cfg: ExperimentConfig, output: Path | None = None, *, keep_models: bool = False,
               use_store: bool = False, console: Console | None = None) -> ExperimentRun:
    """Run ``cfg`` and write its reports to ``output`` (default ``<output_dir>/<name>-<time>``). Every
    finished (seed, model) record is appended to ``runs.jsonl`` at once: a run stopped after 50 minutes
    keeps its first 50 minutes."""
    console = console or Console(stderr=True)
    data, content = load_experiment_data(cfg, use_store, console)
    folder = Path(output or Path(cfg.output_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.mkdir(parents=True, exist_ok=True)
    resolved = cfg.model_dump(mode="json")
    with open(folder / "runs.jsonl", "w") as log:
        def on_run(label: str, record: dict) -> None:
            log.write(json.dumps({"label": label, **record}, default=str) + "\n")
            log.flush()

        if cfg.transfer is not None:
            from mosaicrec.evaluation.transfer import run_transfer, write_transfer_reports

            transfer = run_transfer(data, cfg.transfer, cfg.split, cfg.models, cfg.evaluation, content=content,
                                    seeds=cfg.seeds, name=cfg.name, config=resolved, console=console, on_run=on_run)
            report = write_transfer_reports(transfer, folder, cfg.baseline)
            (folder / "config.json").write_text(json.dumps(resolved, indent=2))
            return ExperimentRun(folder, report, transfer, data, transfer=True)
        result: ExperimentResult = run_experiment(
            data, cfg.split, cfg.models, cfg.evaluation, name=cfg.name, config=resolved, console=console,
            keep_models=keep_models, content=content, cold_start=cfg.cold_start, seeds=cfg.seeds, tuning=cfg.tuning,
            baseline=cfg.baseline, on_run=on_run, ablation=cfg.ablation)
    write_reports(result, folder)
    (folder / "config.json").write_text(json.dumps(resolved, indent=2))
    return ExperimentRun(folder, folder / "report.md", result, data)
