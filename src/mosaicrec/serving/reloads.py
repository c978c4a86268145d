"""Model reloads of a service: a folder inside the model root, checked against the served catalog, like
rule and encoders, built beside the served snapshot and swapped in one assignment (or, with replicas,
prepared on each and swapped on all at once: :mod:`mosaicrec.serving.replication`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mosaicrec.errors import MosaicError
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.training import TrainingInfo
from mosaicrec.ranking.snapshot import ContentView, ModelView


class ModelRejected(MosaicError):
    """A model folder that cannot be served here (broken, outside the model root, another catalog; 422)."""


class ModelSwaps:
    """The reload half of :class:`~mosaicrec.serving.service.Service` (a mixin: it reads the service's
    snapshot, locks, live state and record)."""

    def resolve_model_dir(self, folder: str | None) -> Path:
        """A reload's folder: inside the model root the server was started with, or refused."""
        if self.model_root is None:
            raise ModelRejected("this server was started without a model root; reloads are off")
        if folder is None:
            raise ModelRejected("name the model folder to load (model_dir)")
        if "\x00" in folder or ".." in Path(folder).parts:
            raise ModelRejected(f"model_dir {folder!r}: must be a folder inside the model root (no '..')")
        real = Path(os.path.realpath(self.model_root / folder))
        if real != self.model_root and self.model_root not in real.parents:
            raise ModelRejected(f"model_dir {folder!r}: must be a folder inside the model root")
        return real

    def load_model_dir(self, folder: Path) -> tuple[BaseRecommender, TrainingInfo]:
        """A saved model and its training record; any failure is a :class:`ModelRejected` naming the folder
        relative to the model root."""
        from mosaicrec.models import load_model

        name = os.path.relpath(folder, self.model_root) if self.model_root else folder.name
        if not (folder / "model.json").is_file():
            raise ModelRejected(f"model_dir {name!r}: no saved model there (model.json missing)")
        try:
            return load_model(folder), TrainingInfo.load(folder)
        except Exception as e:  # noqa: BLE001  a broken folder of any kind: refuse it, keep serving
            raise ModelRejected(f"model_dir {name!r}: cannot load the model ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200]})") from None

    def swap_model(self, model: BaseRecommender, info: TrainingInfo | None = None) -> None:
        """Serve a newly trained model. It must score this catalog (its items all in it) and read content
        made by the same encoders. Its snapshot (index, id maps, catalog in its order, content realigned) is
        built beside the old one; the swap is one assignment, so requests see either model, never a mix,
        and none fails. Live events are kept; users with events the new model lacks are folded in."""
        self.install_model(self.prepare_model(model, info))

    def prepare_model(self, model: BaseRecommender, info: TrainingInfo | None = None) -> ModelView:
        """The first half of :meth:`swap_model`: the model checked and its view (index included) built,
        not yet served (replicas prepare, then all swap at once)."""
        info = self._compatible(model, info or TrainingInfo())
        return self._model_view(model, info, len(self._snap.catalog))

    def install_model(self, view: ModelView) -> None:
        """The second half of :meth:`swap_model`: serve a prepared model from the next request on."""
        model, info = view.model, view.info
        with self._writes:
            snap = self._snap
            cv = snap.content
            catalog = snap.catalog.reordered([str(i) for i in model.item_ids])
            cview = cv
            if cv is not None and catalog.ids != snap.catalog.ids:
                cview = ContentView.build(cv.content, catalog.ids, self._use_ann(len(catalog)), self.index_dir)
            with self.live.lock:
                self.live.refresh_changed(view.users, view.item_index, model._require_fitted())
                self.live.block_erased(info.data_as_of)
                self._install(view=view, catalog=catalog, content=cview)
            self.info = info
            self.content.encoders = {}
            self.reloads += 1

    def _compatible(self, model: BaseRecommender, info: TrainingInfo) -> TrainingInfo:
        """The model's record if this service can serve it: the same like rule, this catalog's items, and
        content made by the served content's encoders; else :class:`ModelRejected`."""
        if info.threshold is not None and info.threshold != self.info.threshold:
            raise ModelRejected(f"the model's likes are weights ≥ {info.threshold:g}, this service's "
                                f"{_rule(self.info.threshold)}: restart the service to change what a like is")
        snap = self._snap
        alien = [str(i) for i in model.item_ids if str(i) not in snap.catalog.index]
        if alien:
            raise ModelRejected(f"the model was trained on another catalog: {len(alien)} of its "
                                f"{len(model.item_ids)} items are not in this one (e.g. {alien[0]!r})")
        cv = snap.content
        for name, spec in info.encoders.items():
            source = cv.content.sources.get(name) if cv is not None else None
            if source is not None and spec.get("key") and spec["key"] != source:
                raise ModelRejected(f"the model reads {name!r} content made by {spec['key']}, but this "
                                    f"server's is made by {source}; restart it with the model's encoders")
        return info.model_copy(update={"threshold": self.info.threshold})

    def reload(self, folder: str | None) -> dict[str, Any]:
        """Load a model folder (inside the model root) and serve it; the old model keeps serving if it fails.
        With replicas, every replica loads it and all swap once all have (or none does)."""
        path = self.resolve_model_dir(folder)
        model, info = self.load_model_dir(path)
        rel = os.path.relpath(path, self.model_root)
        if self.replication is not None:
            self._compatible(model, info or TrainingInfo())  # refused here, before the replicas load it
            self.replication.reload(rel)
        else:
            self.swap_model(model, info)
        return {"model": model.name, "model_dir": rel, "reloads": self.reloads}


def _rule(threshold: float | None) -> str:
    return f"weights ≥ {threshold:g}" if threshold is not None else "weights > 0"
