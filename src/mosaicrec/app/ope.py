"""Off-policy evaluation of trained models on a service's impression log: each target's lists are made by
the serving pipeline over the model's store, its users' events less the logged lists' rewards
(:mod:`mosaicrec.evaluation.service_log`). Beside a running service (which holds the store) the log is read
from a consistent snapshot the service writes (``POST /admin/snapshot``), as retraining does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mosaicrec.app.trained import model_store, saved_content
from mosaicrec.data.store import Store, default_store_path
from mosaicrec.errors import MosaicError, StoreLockedError
from mosaicrec.evaluation.service_log import (LogEvaluation, LoggedRounds, LoggerCheck, evaluate_on_log,
                                              read_impressions, read_slates, split_rewards)
from mosaicrec.models import load_model
from mosaicrec.models.training import TrainingInfo
from mosaicrec.ranking.live import LiveState
from mosaicrec.serving.service import Service


@dataclass
class OpeReport:
    store: Path
    threshold: float
    log: pd.DataFrame
    targets: list[LogEvaluation]
    logger: LoggerCheck
    kinds: dict[str, int]          # logged lists by how they were chosen (deterministic, epsilon-greedy, …)
    theta: list[float]
    theta_estimated: bool

    @property
    def lists(self) -> int:
        return int(self.log["request_id"].nunique())

    @property
    def stochastic_rows(self) -> float:
        return float((self.log["propensity"] < 1).mean())

    def to_dict(self) -> dict:
        return {"store": str(self.store), "threshold": self.threshold, "lists": self.lists, "rows": len(self.log),
                "logged_value": float(self.log["reward"].mean()), "kinds": self.kinds, "theta": self.theta,
                "theta_estimated": self.theta_estimated, "logger": self.logger.to_dict(),
                "targets": [t.to_dict() for t in self.targets]}


def _open(store_path: Path, server: str | None, admin_key: str | None) -> Store:
    if server is not None:
        from mosaicrec.app.retrain import log_snapshot

        if not admin_key:
            raise MosaicError("--server needs an admin key: --api-key-file FILE with a KEY:admin line, or "
                              "$MOSAICREC_API_KEYS")
        folder = Path(log_snapshot(server, admin_key))
        if not (folder / "snapshot.json").is_file():
            raise MosaicError(f"the service wrote its snapshot to {folder}, which this machine cannot read: run "
                              "`mosaicrec ope --server` where the service's model root is (or a shared disk)")
        return Store.open_snapshot(folder)
    if not store_path.exists():
        raise MosaicError(f"no store at {store_path}")
    try:
        return Store(store_path, read_only=True)
    except StoreLockedError:
        raise MosaicError(f"the store {store_path} is held by a running service: evaluate on a snapshot it "
                          "writes: --server URL with an admin key (--api-key-file or $MOSAICREC_API_KEYS)") from None


def evaluate_targets(models: list[Path], store: Path | None = None, *, threshold: float | None = None,
                     policy: str | None = None, since: float | None = None, boot: int = 200,
                     server: str | None = None, admin_key: str | None = None, min_support: float = 0.95,
                     min_ess: float = 50.0) -> OpeReport:
    """Estimate each model folder's value per shown slot on the log of ``store`` (default: the first
    model's store), or with ``server`` on a snapshot that running service writes. ``threshold``: the
    weight at which an attributed event is a reward (default: the first model's like threshold, else 1);
    ``policy`` / ``since``: only the lists of that logging policy / from that Unix time on;
    ``min_support`` / ``min_ess``: below these an estimator is refused, with the reason."""
    if not models:
        raise MosaicError("give at least one --model")
    for folder in models:
        if not (folder / "model.json").is_file():
            raise MosaicError(f"--model {folder}: no trained model there (model.json missing)")
    if not 0 <= min_support <= 1:
        raise MosaicError(f"--min-support must lie in [0, 1], got {min_support}")
    store_path = Path(store or model_store(models[0], None) or default_store_path())
    info = TrainingInfo.load(models[0])
    rule = threshold if threshold is not None else (info.threshold if info.threshold is not None else 1.0)
    with _open(store_path, server, admin_key) as st:
        log = read_impressions(st, rule, policy, since)
        if log.empty:
            raise MosaicError(f"the impression log of {store_path} has no lists" + (f" of policy {policy!r}"
                                                                                   if policy else "")
                              + ": serve some first")
        slates = read_slates(st, set(log["request_id"].astype(str)))
        events = st.events_frame(("user_id", "item_id", "timestamp", "weight", "context"))
        catalog = st.catalog()
        rounds = LoggedRounds(log, slates)
        history, answers = split_rewards(events, set(log["request_id"].astype(str)))
        results = []
        for folder in models:
            target_info = TrainingInfo.load(folder)
            service = Service(load_model(folder), st.path, saved_content(folder, store_path), info=target_info,
                              read_only=True, store=st, catalog=catalog)
            listing = service.listing()
            live = LiveState(listing.live.threshold)
            live.load(history, dict(listing.live.erased))
            listing.live = live
            results.append(evaluate_on_log(rounds, listing, folder.name, answers=answers, n_boot=boot,
                                           min_support=min_support, min_ess=min_ess))
    return OpeReport(store_path, rule, log, results, rounds.logger_check(n_boot=boot), rounds.kinds,
                     [float(t) for t in rounds.theta], rounds.theta_estimated)
