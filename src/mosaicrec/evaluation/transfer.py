"""Transfer experiments, the ``[transfer]`` section of an experiment file: what a model learns on one part of
the data, scored on another part it saw little or nothing of.

* ``kind = "scenarios"``: a model is fitted on the ``source`` scenario's training events (pre-training);
  for each ``targets`` scenario and each share of that scenario's training events (drawn at random with the
  seed), it is **fine-tuned** on the share (the model's ``fine_tune``), against the same model trained on
  the share alone (**scratch**); the pre-trained model unchanged is scored too (share 0). Scored on the
  target scenario's test impressions by users with any training event (the same impressions for every
  row): AUC and GAUC of each of ``labels``.
* ``kind = "catalog"``: the items are cut in two catalogs by the first value of an ``attribute`` (values
  ordered by how many items they head, dealt alternately: A gets the 1st, 3rd … value). Every model is
  fitted on catalog B's training part and ranked within B (its own-data reference); the models named in
  ``zero_shot`` are also fitted on catalog A's events alone and score B from each user's B history, items
  they never trained on (content models). A ``random`` row is the floor. The split is the experiment's
  ``[split]``, made within B.

Mean ± std over the experiment's seeds. :func:`write_transfer_reports` writes ``results.json``,
``report.md`` and, for scenarios, ``transfer.png`` (the curve of each target against the share).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mosaicrec.data.schema import Dataset, Interactions
from mosaicrec.data.splits import SplitConfig, split, to_implicit
from mosaicrec.errors import ConfigError
from mosaicrec.evaluation.impressions import impression_metrics
from mosaicrec.evaluation.protocol import EvaluationConfig, evaluate_ranking
from mosaicrec.evaluation.stats import fmt
from mosaicrec.models.registry import MODELS, ModelSpec, create, seeded
from mosaicrec.models.query import Query

TransferKind = Literal["scenarios", "catalog"]
_VALUE = Field(min_length=1, max_length=64)


class TransferConfig(BaseModel):
    """The ``[transfer]`` section (see the module)."""

    model_config = ConfigDict(extra="forbid")

    kind: TransferKind
    context: str = Field("scenario", min_length=1, max_length=64,
                         description="scenarios: the events' context column naming the scenario")
    source: str | None = Field(None, min_length=1, max_length=64, description="scenarios: pre-trained on")
    targets: list[str] = Field(default_factory=list, max_length=64, description="scenarios: fine-tuned on")
    shares: list[float] = Field(default_factory=lambda: [0.1, 0.3, 1.0], min_length=1, max_length=10,
                                description="scenarios: shares of each target's training events")
    labels: list[str] = Field(default_factory=lambda: ["click", "long_view"], min_length=1, max_length=8,
                              description="scenarios: binary event columns scored (AUC, GAUC); the first "
                              "is plotted")
    attribute: str = Field("genres", min_length=1, max_length=64,
                           description="catalog: the item attribute whose first value cuts the catalog")
    zero_shot: list[str] = Field(default_factory=list, max_length=32,
                                 description="catalog: model labels also fitted on catalog A alone")

    @model_validator(mode="after")
    def _check(self) -> TransferConfig:
        if self.kind == "scenarios":
            if self.source is None or not self.targets:
                raise ValueError("transfer kind 'scenarios' needs a source scenario and targets")
            if self.source in self.targets:
                raise ValueError(f"transfer: the source scenario {self.source!r} is also a target")
            if len(set(self.targets)) != len(self.targets):
                raise ValueError("transfer: a target scenario is listed twice")
            bad = [s for s in self.shares if not 0.0 < s <= 1.0]
            if bad:
                raise ValueError(f"transfer: shares must lie in (0, 1], got {bad[0]}")
        elif self.zero_shot and len(set(self.zero_shot)) != len(self.zero_shot):
            raise ValueError("transfer: a zero_shot label is listed twice")
        return self

    def check_models(self, models: list[ModelSpec]) -> None:
        """Refuse models the transfer cannot run, naming them (called when the experiment is read)."""
        labels = [m.display for m in models]
        if self.kind == "scenarios":
            for m in models:
                if not hasattr(MODELS[m.name], "fine_tune"):
                    raise ValueError(f"transfer kind 'scenarios': model {m.display!r} ({m.name}) cannot be "
                                     "fine-tuned (multitask can)")
        unknown = [z for z in self.zero_shot if z not in labels]
        if unknown:
            raise ValueError(f"transfer: zero_shot names {unknown[0]!r}, which is no model label "
                             f"({', '.join(labels)})")


@dataclass
class TransferResult:
    """Every (seed, model, arm …) row of a transfer experiment, and what it was run on."""

    name: str
    transfer: TransferConfig
    config: dict[str, Any]
    seeds: list[int]
    rows: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def share_of(events: Interactions, share: float, seed: int) -> Interactions:
    """A seeded random ``share`` of the events (all of them at 1)."""
    if share >= 1.0:
        return events
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(events.n_events, max(1, int(round(share * events.n_events))), replace=False))
    return events.subset(keep)


def first_values(items, attribute: str) -> list[str]:
    """Each item's first value of ``attribute`` (a list or a scalar in its attributes), or 'unknown'."""
    out = []
    for a in items["attributes"]:
        v = a.get(attribute) if isinstance(a, dict) else None
        if isinstance(v, (list, tuple)):
            v = v[0] if len(v) else None
        out.append("unknown" if v is None or v == "" else str(v))
    return out


def catalog_cut(items, attribute: str) -> np.ndarray:
    """True for catalog A: the item's first ``attribute`` value is one dealt to A (values ordered by how
    many items they head, dealt alternately)."""
    first = first_values(items, attribute)
    order = [g for g, _ in Counter(first).most_common()]
    to_a = {g for n, g in enumerate(order) if n % 2 == 0}
    return np.array([g in to_a for g in first])


def run_transfer(dataset: Dataset, transfer: TransferConfig, split_config: SplitConfig, models: list[ModelSpec],
                 evaluation: EvaluationConfig | None = None, content=None, seeds: list[int] | None = None,
                 name: str = "transfer", config: dict[str, Any] | None = None, console=None,
                 on_run: Callable[[str, dict[str, Any]], None] | None = None) -> TransferResult:
    """Run a transfer experiment (see the module) once per seed; ``on_run(label, row)`` is called as each
    row is made."""
    transfer.check_models(models)
    split_config = split_config.with_likes_of(dataset)
    seeds = list(seeds or [split_config.seed])
    result = TransferResult(name, transfer, config or {}, seeds)
    t0 = time.perf_counter()
    run = _scenarios if transfer.kind == "scenarios" else _catalog
    run(dataset, transfer, split_config, models, evaluation or EvaluationConfig(), content, result, console,
        on_run or (lambda label, row: None))
    result.seconds = round(time.perf_counter() - t0, 1)
    return result


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text, highlight=False)


def _scenarios(dataset, tc: TransferConfig, split_config, models, evaluation, content, result, console, on_run):
    x = dataset.interactions
    if tc.context not in x.context:
        raise ConfigError(f"transfer: the events have no context column {tc.context!r}")
    train, test = split(x, split_config)
    tab, test_tab = (np.asarray(e.context[tc.context]).astype(str) for e in (train, test))
    present = set(np.unique(tab))
    missing = [s for s in [tc.source, *tc.targets] if s not in present]
    if missing:
        raise ConfigError(f"transfer: scenario {missing[0]!r} has no training events (there are "
                          f"{', '.join(sorted(present)[:20])})")
    result.info = {"source_events": int((tab == tc.source).sum()),
                   "targets": {t: {"train_events": int((tab == t).sum()), "test_events": int((test_tab == t).sum())}
                               for t in tc.targets}}

    def scores(model, target: Interactions) -> dict[str, float]:
        m, _ = impression_metrics(model, train, target, tc.labels)
        return {k: v for k, v in m.items() if k.endswith(" auc") or k.endswith(" gauc")}

    for seed in result.seeds:
        for spec in models:
            params = seeded(spec.name, spec.params, seed)
            t0 = time.perf_counter()
            pre = create(spec.name, params).fit(train.subset(tab == tc.source), content=content)
            _say(console, f"seed {seed} {spec.display}: pre-trained on {tc.context} {tc.source} in "
                          f"{time.perf_counter() - t0:.0f} s")
            for t in tc.targets:
                own, target = train.subset(tab == t), test.subset(test_tab == t)
                rows = [{"seed": seed, "model": spec.display, "target": t, "share": 0.0, "arm": "pre-trained",
                         "events": 0, **scores(pre, target)}]
                for share in tc.shares:
                    part = share_of(own, share, seed)
                    for arm in ("scratch", "transfer"):
                        t1 = time.perf_counter()
                        model = (create(spec.name, params).fit(part, content=content) if arm == "scratch"
                                 else pre.fine_tune(part))
                        rows.append({"seed": seed, "model": spec.display, "target": t, "share": share, "arm": arm,
                                     "events": part.n_events, "fit_seconds": round(time.perf_counter() - t1, 1),
                                     **scores(model, target)})
                for row in rows:
                    result.rows.append(row)
                    on_run(spec.display, row)
                first = f"{tc.labels[0]} auc"
                _say(console, f"  {tc.context} {t}: " + ", ".join(
                    f"{r['arm']} {r['share']:g} {r[first]:.4f}" for r in rows))


def _catalog(dataset, tc: TransferConfig, split_config, models, evaluation, content, result, console, on_run):
    x = to_implicit(dataset.interactions, split_config.rating_threshold)
    in_a = catalog_cut(dataset.items, tc.attribute)
    if in_a.all() or not in_a.any():
        raise ConfigError(f"transfer: attribute {tc.attribute!r} does not cut the catalog in two "
                          "(every item has the same first value)")
    b_items = np.flatnonzero(~in_a)
    on_a, on_b = x.subset(in_a[x.items]), x.subset(~in_a[x.items])
    train_b, test_b = split(on_b, split_config)
    users = np.flatnonzero(np.diff(test_b.binary.indptr) > 0)
    users = users[np.diff(train_b.binary.indptr)[users] > 0]  # a B history to predict from
    if not len(users):
        raise ConfigError("transfer: no user has both a training and a test event in catalog B")
    history = Query.of_events(train_b)
    result.info = {"attribute": tc.attribute, "items_a": int(in_a.sum()), "items_b": int(len(b_items)),
                   "events_a": on_a.n_events, "events_b": on_b.n_events, "users": int(len(users))}
    _say(console, f"catalog A: {in_a.sum()} items, {on_a.n_events} events; catalog B: {len(b_items)} items, "
                  f"{on_b.n_events} events; {len(users)} users scored")

    def rank(model, score_fn=None) -> dict[str, float]:
        return dict(evaluate_ranking(model, test_b, exclude=train_b.binary, config=evaluation, users=users,
                                     candidates=b_items, score_fn=score_fn).metrics)

    def from_history(model):
        return lambda rows: model.score(Query(history=history.history[rows],
                                                    timestamps=history.timestamps[rows]))

    for seed in result.seeds:
        arms: list[tuple[str, str, Callable[[], dict[str, float]]]] = []
        for spec in models:
            params = seeded(spec.name, spec.params, seed)
            if spec.display in tc.zero_shot:
                arms.append((spec.display, "A (zero-shot)", lambda s=spec, p=params: rank(
                    m := create(s.name, p).fit(on_a, content=content), from_history(m))))
            arms.append((spec.display, "B", lambda s=spec, p=params: rank(create(s.name, p).fit(train_b,
                                                                                               content=content))))
        rng = np.random.default_rng(seed)
        floor = create("mostpop").fit(train_b)  # only its id maps and seen items: the scores are random
        arms.append(("random", "nothing", lambda: rank(floor, lambda rows: rng.random(
            (len(rows), x.n_items)).astype(np.float32))))
        for label, trained_on, fit_and_rank in arms:
            t0 = time.perf_counter()
            row = {"seed": seed, "model": label, "trained_on": trained_on, **fit_and_rank(),
                   "seconds": round(time.perf_counter() - t0, 1)}
            result.rows.append(row)
            on_run(label, row)
            _say(console, f"seed {seed} {label} trained on {trained_on}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in row.items() if "@" in k))


def _stat(rows: list[dict[str, Any]], metric: str, **match: Any) -> tuple[float, float] | None:
    v = np.array([r[metric] for r in rows if metric in r and all(r.get(k) == w for k, w in match.items())])
    if not len(v):
        return None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _cell(stat: tuple[float, float] | None) -> str:
    return "—" if stat is None else fmt(*stat)


def transfer_markdown(result: TransferResult, baseline: str | None = None) -> str:
    """The report: per target and share, scratch against transfer (scenarios); per model and catalog it
    was trained on (catalog). Mean ± std over seeds."""
    tc = result.transfer
    lines = [f"# {result.name}", "", f"Transfer ({tc.kind}), seeds {', '.join(map(str, result.seeds))}: "
             "every figure is the mean ± std over them.", ""]
    rows = result.rows
    if tc.kind == "scenarios":
        first = f"{tc.labels[0]} auc"
        metrics = [first, f"{tc.labels[0]} gauc", *[f"{lab} auc" for lab in tc.labels[1:]]]
        lines += [f"Pre-trained on {tc.context} {tc.source} ({result.info.get('source_events', '?')} training "
                  "events), then fine-tuned on a share of each target's training events (transfer), against "
                  f"the same model trained on that share alone (scratch). Ratio: transfer / scratch on {first}.",
                  ""]
        for model in dict.fromkeys(r["model"] for r in rows):
            lines += [f"## {model}", "", "| target | share | events | " + " | ".join(
                f"scratch {m} | transfer {m}" for m in metrics) + " | ratio |",
                "|---|---:|---:|" + "---:|---:|" * len(metrics) + "---:|"]
            for t in tc.targets:
                pre = [_cell(_stat(rows, m, model=model, target=t, arm="pre-trained")) for m in metrics]
                lines.append(f"| {t} | 0 (pre-trained only) | 0 | " + " | ".join(f"— | {p}" for p in pre) + " | — |")
                for share in tc.shares:
                    events = next((r["events"] for r in rows if r["model"] == model and r["target"] == t
                                   and r["share"] == share), 0)
                    cells = [(_stat(rows, m, model=model, target=t, share=share, arm="scratch"),
                              _stat(rows, m, model=model, target=t, share=share, arm="transfer")) for m in metrics]
                    s, tr = cells[0]
                    ratio = f"{tr[0] / s[0]:.2f}" if s and tr and s[0] else "—"
                    lines.append(f"| {t} | {share:g} | {events} | " + " | ".join(
                        f"{_cell(a)} | {_cell(b)}" for a, b in cells) + f" | {ratio} |")
            lines.append("")
        return "\n".join(lines)
    metrics = sorted({k for r in rows for k in r if "@" in k}, key=lambda m: (m.split("@")[0], int(m.split("@")[1])))
    info = result.info
    lines += [f"Items cut by their first {info.get('attribute')}: catalog A {info.get('items_a')} items, catalog "
              f"B {info.get('items_b')} items; {info.get('users')} users ranked within B.", "",
              "| model | trained on | " + " | ".join(metrics) + (f" | {metrics[0]} / {baseline} on B |"
                                                                   if baseline else " |"),
              "|---|---|" + "---:|" * (len(metrics) + bool(baseline))]
    base = _stat(rows, metrics[0], model=baseline, trained_on="B") if baseline else None
    for model, trained_on in dict.fromkeys((r["model"], r["trained_on"]) for r in rows):
        stats = [_stat(rows, m, model=model, trained_on=trained_on) for m in metrics]
        ratio = (f" | {stats[0][0] / base[0]:.2f}" if base and stats[0] and base[0] else " | —") if baseline else ""
        lines.append(f"| {model} | {trained_on} | " + " | ".join(_cell(s) for s in stats) + ratio + " |")
    return "\n".join(lines) + "\n"


def transfer_plot(result: TransferResult, path: Path) -> bool:
    """Scenarios: the first label's AUC (top) and GAUC (bottom) against the share of each target's data,
    scratch against transfer, the pre-trained model as a line. False (nothing drawn) for a catalog."""
    tc = result.transfer
    if tc.kind != "scenarios":
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (f"{tc.labels[0]} auc", f"{tc.labels[0]} gauc")
    model = result.rows[0]["model"]
    fig, axes = plt.subplots(2, len(tc.targets), figsize=(4 * len(tc.targets), 6.4), squeeze=False)
    for row, metric in enumerate(metrics):
        for ax, t in zip(axes[row], tc.targets):
            for arm, style in (("scratch", "o--"), ("transfer", "o-")):
                stats = [_stat(result.rows, metric, model=model, target=t, share=s, arm=arm) for s in tc.shares]
                ax.errorbar([100 * s for s in tc.shares], [s[0] for s in stats], yerr=[s[1] for s in stats],
                            fmt=style, capsize=3, label=arm)
            pre = _stat(result.rows, metric, model=model, target=t, arm="pre-trained")
            ax.axhline(pre[0], color="grey", lw=1, ls=":", label="pre-trained only")
            ax.set_xscale("log")
            ax.set_xticks([100 * s for s in tc.shares], [f"{100 * s:g}%" for s in tc.shares])
            ax.set_title(f"{tc.context} {t}")
            if row == 1:
                ax.set_xlabel("share of the target's training events")
        axes[row][0].set_ylabel(f"{metric} (test)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{result.name}: fine-tuning a model of {tc.context} {tc.source} vs training from scratch "
                 "(mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_transfer_reports(result: TransferResult, out_dir: str | Path, baseline: str | None = None) -> Path:
    """``results.json``, ``report.md`` and (scenarios) ``transfer.png`` in ``out_dir``; returns the report."""
    from mosaicrec.evaluation.provenance import provenance

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = transfer_markdown(result, baseline)
    (out / "results.json").write_text(json.dumps(
        {"name": result.name, "transfer": result.transfer.model_dump(), "seeds": result.seeds, "seconds": result.seconds,
         "info": result.info, "config": result.config, "rows": result.rows, "table": md,
         "provenance": provenance()}, indent=2, default=str))
    report = out / "report.md"
    report.write_text(md)
    transfer_plot(result, out / "transfer.png")
    return report
