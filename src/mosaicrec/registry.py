"""One registry mechanism for every pluggable part: models, encoders and datasets.

A :class:`Registry` maps a config name to what it names (a model class, an encoder class, a dataset
entry). Built-in parts register themselves with the registry's decorator where they are defined, so a name
is spelled in one place. A separate package adds parts without touching mosaicrec, through a Python entry
point in its own ``pyproject.toml``::

    [project.entry-points."mosaicrec.models"]
    my-model = "my_package.models:MyModel"

    [project.entry-points."mosaicrec.encoders"]
    my-encoder = "my_package.encoders:MyEncoder"

    [project.entry-points."mosaicrec.datasets"]
    my-set = "my_package.data:my_set"      # a function (data_root, cache_dir) -> DatasetSource

The entry points of a group are loaded the first time the registry is read (not at import, so a broken
plugin costs nothing until a name is looked up, and then fails with its package named). A loaded object
that registered itself on import is kept as it is; any other is registered under the entry point's name by
the registry: a class must subclass the registry's ``base`` and takes the entry point's name as its
``name``; a registry without a base (datasets) wraps the object with its ``adopt`` hook.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from mosaicrec.errors import ConfigError

T = TypeVar("T")


class PluginError(ConfigError):
    """An installed plugin's entry point cannot be loaded."""


class Registry(Mapping[str, T], Generic[T]):
    """Name → part, filled by built-in registrations and by the entry points of ``group``."""

    def __init__(self, kind: str, group: str, *, base: type | None = None,
                 adopt: Callable[[str, Any], T] | None = None) -> None:
        self.kind, self.group, self.base = kind, group, base
        self._adopt = adopt
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False
        self._lock = threading.RLock()

    # -- registering ------------------------------------------------------------------------------------
    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a second part under a taken name is an error, not a shadow."""
        if not name or not isinstance(name, str):
            raise ConfigError(f"a {self.kind} needs a non-empty name, got {name!r}")
        with self._lock:
            have = self._entries.get(name)
            if have is not None and have is not entry and _origin(have) != _origin(entry):
                raise ConfigError(f"two {self.kind}s are registered as {name!r}: {_origin(have)} and "
                                  f"{_origin(entry)}")
            self._entries[name] = entry
        return entry

    # -- reading ----------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        self._load_plugins()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def require(self, name: str) -> T:
        """The part called ``name``, or a :class:`ConfigError` listing the registered names."""
        if name not in self:
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self))}")
        return self._entries[name]

    # -- plugins ----------------------------------------------------------------------------------------
    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        with self._lock:
            if self._plugins_loaded:
                return
            self._plugins_loaded = True  # first: a plugin that reads the registry while loading must not loop
            for ep in entry_points(group=self.group):
                try:
                    obj = ep.load()
                except Exception as e:  # noqa: BLE001  any import failure of a third-party package
                    self._plugins_loaded = False
                    raise PluginError(f"the {self.kind} plugin {ep.name!r} ({ep.value}) cannot be loaded: "
                                      f"{type(e).__name__}: {e}") from None
                if ep.name in self._entries:
                    continue  # it registered itself on import
                self.add(ep.name, self._adopt(ep.name, obj) if self._adopt is not None else self._named(ep.name, obj))

    def _named(self, name: str, cls: Any) -> T:
        if self.base is not None and not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(f"the {self.kind} plugin {name!r} is not a {self.base.__name__} subclass: {cls!r}")
        cls.name = name
        return cls

    def reload_plugins(self) -> None:
        """Read the entry points again (after installing a plugin in a running process)."""
        with self._lock:
            self._plugins_loaded = False
        self._load_plugins()


def _origin(entry: Any) -> str:
    target = getattr(entry, "build", entry)  # a dataset entry names its builder
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"
