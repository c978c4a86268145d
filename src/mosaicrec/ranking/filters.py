"""Attribute filters (``genre:Comedy``) as boolean masks over a catalog, from postings built once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class AttributeFilter:
    """Masks of the items passing ``attribute: value`` filters over a fixed list of attribute dicts.

    The first filter on an attribute scans the catalog once and keeps, for each of its values, the items
    that have it (a scan per request is too slow at 100k items). The object belongs to one immutable
    catalog: a changed catalog gets a new one, so the postings never describe another catalog. Two threads
    filling the same attribute at once compute the same postings; the dict assignment is atomic."""

    def __init__(self, attributes: Sequence[Mapping[str, Any]]) -> None:
        self.attributes = attributes
        self._postings: dict[str, dict[str, np.ndarray]] = {}

    def mask(self, filters: Mapping[str, Any], n: int | None = None) -> np.ndarray:
        """Items (over the first ``n`` rows, default all) passing every filter: a value, or a member of a list
        attribute, compared as text. A new array the caller may change."""
        n = len(self.attributes) if n is None else n
        out = np.ones(n, bool)
        for key, want in filters.items():
            postings = self._postings.get(key)
            if postings is None:
                postings = self._postings[key] = _postings(self.attributes, key)
            passing = np.zeros(n, bool)
            hits = postings.get(str(want))
            if hits is not None:
                passing[hits[hits < n]] = True
            out &= passing
        return out


def _postings(attributes: Sequence[Mapping[str, Any]], key: str) -> dict[str, np.ndarray]:
    found: dict[str, list[int]] = {}
    for i, attrs in enumerate(attributes):
        have = attrs.get(key)
        if have is None:
            continue
        for value in (have if isinstance(have, list) else [have]):
            found.setdefault(str(value), []).append(i)
    return {value: np.array(items, np.int64) for value, items in found.items()}
