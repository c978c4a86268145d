"""A running service: the model and its store, API keys, the media policy, an optional bandit and
knowledge graph, content the model did not bring encoded in the background, and the HTTP app."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from fastapi import FastAPI
from rich.console import Console

from mosaicrec.app.jobs import RetrainJobs
from mosaicrec.app.trained import (Trained, check_sources, load_trained, merge_content, missing_content,
                                   encoder_params, saved_content, serving_encoders)
from mosaicrec.data.content import ItemContent
from mosaicrec.data.store import default_store_path
from mosaicrec.errors import MosaicError
from mosaicrec.serving.app import create_app
from mosaicrec.serving.auth import KeyKind, load_keys
from mosaicrec.serving.media import MediaPolicy
from mosaicrec.serving.service import Service


@dataclass
class ServeOptions:
    """What ``mosaicrec serve`` takes (its ``--help`` says what each does)."""

    model_dir: Path
    store: Path | None = None
    api_key_file: Path | None = None
    api_keys: list[str] | None = None
    encoder: list[str] | None = None
    text_fields: list[str] | None = None
    rate_limit: float = 1000.0
    retrieval: str = "auto"
    content_file: Path | None = None
    no_content: bool = False
    media_root: Path | None = None
    media_read_roots: list[Path] = field(default_factory=list)
    model_root: Path | None = None
    max_media_mb: float = 25.0
    public_docs: bool = False
    bandit: str | None = None
    bandit_share: float = 1.0
    bandit_scenarios: list[str] | None = None
    kg: str | None = None
    report: Path | None = None
    explore: str | None = None
    explore_epsilon: float = 0.1
    explore_temperature: float = 1.0
    explore_candidates: int = 100
    explore_share: float = 1.0
    max_video_mb: float = 200.0


@dataclass
class Server:
    app: FastAPI
    service: Service
    ready_seconds: float
    to_encode: int

    def describe(self, host: str, port: int) -> str:
        svc = self.service
        return (f"serving {svc.model.name} over {len(svc.snapshot.catalog):,} items ({svc.retrieval} retrieval) on "
                f"http://{host}:{port}, ready in {self.ready_seconds:.1f}s; content: {svc.content_status}"
                + (f" ({self.to_encode:,} items to encode)" if self.to_encode else ""))


def build_server(opts: ServeOptions, console: Console | None = None) -> Server:
    """The service and its HTTP app, ready to answer at once; items the served content lacks are encoded in
    a background thread (routes that need content answer 503 meanwhile)."""
    if opts.report is not None and not opts.report.is_dir():
        raise MosaicError(f"--report {opts.report}: no such folder (give the --out folder of `mosaicrec evaluate`)")
    keys = serving_keys(opts)
    t0 = time.perf_counter()
    trained = load_trained(opts.model_dir, opts.store)
    content, specs = served_content(opts, trained)
    media = MediaPolicy(opts.media_root or Path(default_store_path()).parent / "media", int(opts.max_media_mb * 1e6),
                        tuple(opts.media_read_roots), max_video_bytes=int(opts.max_video_mb * 1e6))
    root = opts.model_root or opts.model_dir.resolve().parent
    service = Service(trained.model, trained.store_path, content, info=trained.info, retrieval=opts.retrieval,
                      media=media, model_root=root, bandit=_bandit(opts), explore=explore_config(opts),
                      kg=_kg(opts, trained.items, console),
                      index_dir=opts.model_dir / "index", catalog=trained.items)
    missing = [] if opts.no_content else missing_content(trained.items, content)
    if missing:
        service.content_status = "encoding"
        threading.Thread(target=encode_in_background, daemon=True, name="encode",
                         args=(service, trained.items, missing, content, specs,
                               opts.text_fields or trained.info.text_fields, trained.store_path, trained.info.fields,
                               console, encoder_params(trained.info))).start()
    model_dir = opts.model_dir.resolve()
    app = create_app(service, keys, rate_limit=opts.rate_limit, burst=2 * opts.rate_limit,
                     model_dir=str(model_dir.relative_to(root.resolve())) if model_dir.is_relative_to(root.resolve())
                     else None, jobs=RetrainJobs(service), public_docs=opts.public_docs,
                     report_dir=str(opts.report) if opts.report is not None else None)
    return Server(app, service, time.perf_counter() - t0, len(missing))


def serving_keys(opts: ServeOptions) -> dict[str, KeyKind]:
    keys = load_keys(opts.api_key_file, opts.api_keys)
    if not keys:
        raise MosaicError("give API keys: --api-key-file FILE (lines KEY:read, KEY:write or KEY:admin) or "
                          "$MOSAICREC_API_KEYS")
    return keys


def served_content(opts: ServeOptions, trained: Trained) -> tuple[ItemContent | None, dict[str, str]]:
    """The content the server starts with (given, saved with the model, or the store's; none with
    ``--no-content``) and the encoders it is served with (refused when they did not make it)."""
    specs = serving_encoders(trained.info, opts.encoder, opts.text_fields)
    if opts.no_content:
        return None, specs
    content = ItemContent.load(opts.content_file) if opts.content_file else saved_content(opts.model_dir,
                                                                                           trained.store_path)
    if content is not None:
        check_sources(content, specs)
    return content, specs


def _bandit(opts: ServeOptions):
    if opts.bandit is None:
        return None
    from pydantic import ValidationError

    from mosaicrec.serving.bandit import BanditServing

    try:
        cfg = BanditServing(policy={"policy": opts.bandit}, share=opts.bandit_share, scenarios=opts.bandit_scenarios)
    except ValidationError:
        raise MosaicError(f"--bandit must be linucb, thompson or epsilon-greedy, not {opts.bandit!r}") from None
    if opts.no_content:
        raise MosaicError("--bandit scores items by their content; it cannot run with --no-content")
    return cfg


def explore_config(opts: ServeOptions):
    """The exploring policy ``--explore`` asks for, checked (every bad value is one sentence)."""
    if opts.explore is None:
        return None
    from pydantic import ValidationError

    from mosaicrec.ranking.explore import ExploreConfig

    if opts.bandit is not None:
        raise MosaicError("choose one exploring policy: --bandit or --explore, not both")
    try:
        return ExploreConfig(policy=opts.explore, epsilon=opts.explore_epsilon, temperature=opts.explore_temperature,
                             candidates=opts.explore_candidates, share=opts.explore_share)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MosaicError(f"--explore: {where}: {first['msg']} (policies: epsilon-greedy, plackett-luce)") from None


def _kg(opts: ServeOptions, items: pd.DataFrame, console: Console | None):
    if opts.kg is None:
        return None
    from mosaicrec.data.kg import load_item_kg

    if console is None:
        return load_item_kg(items, opts.kg)
    with console.status(f"loading the knowledge graph {opts.kg}"):
        return load_item_kg(items, opts.kg)


def encode_in_background(service: Service, items: pd.DataFrame, missing: list[str], content: ItemContent | None,
                         specs: dict[str, str], text_fields: list[str] | None, store_path: Path,
                         fields: dict[str, list[str]] | None = None, console: Console | None = None,
                         params: dict[str, dict] | None = None) -> None:
    """Encode the items the served content lacks (through the cache, with progress on stderr), then serve
    the merged content. The encoders run in a spawned child process: torch and the pretrained weights
    (several hundred MB) never enter the server, and their memory is returned when the child ends. A
    failure is shown in ``/status`` (``content_status``) and serving goes on."""
    console = console or Console(stderr=True)
    try:
        merged = encode_missing(items, missing, content, specs, text_fields, store_path, fields, params)
        service.set_content(merged)
        console.print(f"content ready: {', '.join(merged.modalities)} for {len(merged.item_ids):,} items")
    except Exception as e:  # noqa: BLE001  serving goes on without content; say why
        service.content_status = f"failed: {e}"
        console.print(f"[red]content encoding failed:[/red] {e}", highlight=False)


def encode_missing(items: pd.DataFrame, missing: list[str], content: ItemContent | None, specs: dict[str, str],
                   text_fields: list[str] | None, store_path: Path, fields: dict[str, list[str]] | None = None,
                   params: dict[str, dict] | None = None) -> ItemContent:
    """``content`` with the ``missing`` items encoded (through the store's cache, progress on stderr) by
    the encoders in ``specs`` with their ``params`` (else those that made ``content``), in a spawned child
    process: torch and the pretrained weights never enter this one."""
    import multiprocessing
    import tempfile

    from mosaicrec.encoders.stage import part_of

    todo = items[items["item_id"].astype(str).isin(set(missing))]
    params = dict(params or {})
    if not specs and content is not None:
        specs = {}
        for name, src in content.sources.items():
            whole = part_of(name, src)  # a video's parts come from the video's encoder, giving them
            specs[whole[0] if whole else name] = src.split("@")[0]
            if whole:
                params.setdefault(whole[0], {}).setdefault("content", "both")
    with tempfile.TemporaryDirectory(dir=Path(store_path).parent, prefix=".encode-") as tmp:
        out = Path(tmp) / "encoded.npz"
        child = multiprocessing.get_context("spawn").Process(
            target=_encode_child, args=(todo, specs or None, text_fields, fields, str(store_path), str(out), params),
            name="encode", daemon=True)
        child.start()
        child.join()
        if child.exitcode != 0 or not out.is_file():
            error = Path(tmp) / "error.txt"
            raise MosaicError(error.read_text().strip() if error.is_file() else f"exit {child.exitcode}")
        encoded = ItemContent.load(out)
    return encoded if content is None else merge_content(content, encoded)


def _encode_child(items: pd.DataFrame, specs: dict[str, str] | None, text_fields: list[str] | None,
                  fields: dict[str, list[str]] | None, store_path: str, out: str,
                  params: dict[str, dict] | None = None) -> None:
    """The background encoding's child process: encode through the store's cache, save to ``out`` (a
    failure's message to ``error.txt`` beside it)."""
    from mosaicrec.encoders import EmbeddingCache, create_encoder, default_cache_path, encode_items

    try:
        encoders = ({name: create_encoder(enc, **(params or {}).get(name, {})) for name, enc in specs.items()}
                    if specs else None)
        with EmbeddingCache(default_cache_path(store_path)) as cache:
            encoded = encode_items(items, encoders, cache=cache, text_fields=text_fields, fields=fields,
                                   console=Console(stderr=True)).content
        encoded.save(out)
    except BaseException as e:  # noqa: BLE001  the parent reports it; serving goes on
        Path(out).with_name("error.txt").write_text(f"{type(e).__name__}: {e}" if not isinstance(e, MosaicError)
                                                    else str(e))
        raise SystemExit(1) from None
