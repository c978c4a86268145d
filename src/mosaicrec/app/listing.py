"""The serving pipeline over a store, opened for reading: what ``mosaicrec recommend``, ``similar``,
``search`` and ``export`` ask, answered by the API's own rules (dislikes out, only likes folded in and
cited, cold start for users with none)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from mosaicrec.app.trained import catalog_content, encoder_pairs, encoder_params, load_trained, saved_content
from mosaicrec.serving.service import Service


@contextmanager
def open_pipeline(model_dir: Path, store: Path | None = None, need_content: bool = False,
                  console: Console | None = None) -> Iterator[Service]:
    """A read-only service over the model's store (or ``store``): its content is the model's, else the
    store's ``content.npz``, else (with ``need_content``) the catalog encoded through the cache."""
    trained = load_trained(model_dir, store)
    content = saved_content(model_dir, trained.store_path)
    if content is None and need_content:
        info = trained.info
        content, _ = catalog_content(trained.items, trained.store_path, encoder_pairs(info), info.text_fields,
                                     info.fields, console, encoder_params(info))
    service = Service(trained.model, trained.store_path, content, info=trained.info, read_only=True)
    try:
        yield service
    finally:
        service.close()
