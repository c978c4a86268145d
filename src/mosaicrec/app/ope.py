"""Off-policy evaluation of trained models on a service's impression log: each target's lists are made by
the serving pipeline over the model's store, its users' events less the logged lists' rewards
(:mod:`mosaicrec.evaluation.service_log`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mosaicrec.app.listing import open_pipeline
from mosaicrec.app.trained import model_store
from mosaicrec.data.store import Store, default_store_path
from mosaicrec.errors import MosaicError
from mosaicrec.evaluation.service_log import LogEvaluation, evaluate_on_log, read_impressions, without_rewards
from mosaicrec.models.training import TrainingInfo
from mosaicrec.ranking.live import LiveState


@dataclass
class OpeReport:
    store: Path
    threshold: float
    log: pd.DataFrame
    targets: list[LogEvaluation]

    @property
    def lists(self) -> int:
        return int(self.log["request_id"].nunique())

    @property
    def stochastic_rows(self) -> float:
        return float((self.log["propensity"] < 1).mean())


def evaluate_targets(models: list[Path], store: Path | None = None, *, threshold: float | None = None,
                     policy: str | None = None, since: float | None = None, boot: int = 200) -> OpeReport:
    """Estimate each model folder's value per shown slot on the log of ``store`` (default: the first
    model's store). ``threshold``: the weight at which an attributed event is a reward (default: the first
    model's like threshold, else 1); ``policy`` / ``since``: only the lists of that logging policy / from
    that Unix time on."""
    if not models:
        raise MosaicError("give at least one --model")
    for folder in models:
        if not (folder / "model.json").is_file():
            raise MosaicError(f"--model {folder}: no trained model there (model.json missing)")
    store_path = Path(store or model_store(models[0], None) or default_store_path())
    if not store_path.exists():
        raise MosaicError(f"no store at {store_path}")
    info = TrainingInfo.load(models[0])
    rule = threshold if threshold is not None else (info.threshold if info.threshold is not None else 1.0)
    with Store(store_path, read_only=True) as st:
        log = read_impressions(st, rule, policy, since)
        events = st.events_frame(("user_id", "item_id", "timestamp", "weight", "context"))
    if log.empty:
        raise MosaicError(f"the impression log of {store_path} has no lists" + (f" of policy {policy!r}" if policy
                                                                               else "") + ": serve some first")
    history = without_rewards(events, set(log["request_id"].astype(str)))
    results = []
    for folder in models:
        with open_pipeline(folder, store_path) as service:
            listing = service.listing()
        live = LiveState(listing.live.threshold)
        live.load(history, dict(listing.live.erased))
        listing.live = live
        results.append(evaluate_on_log(log, listing, folder.name, n_boot=boot))
    return OpeReport(store_path, rule, log, results)
