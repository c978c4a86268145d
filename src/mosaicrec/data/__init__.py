"""Data stage: the data model, loaders with validation, the DuckDB store, splits and built-in datasets."""

from mosaicrec.data.datasets import (DATASETS, DatasetSource, ingest_source, load_dataset, load_source,
                                     register_dataset, resolve_source)
from mosaicrec.data.loaders import LoadReport, load_events, load_items, load_users
from mosaicrec.data.schema import Dataset, EventSchema, Interactions, ItemSchema, UserSchema
from mosaicrec.data.splits import (SplitConfig, cold_item_split, cold_user_split, k_core, leave_last_out, random_holdout, split,
                                   temporal_split, to_implicit)
from mosaicrec.data.store import Store

__all__ = [
    "DATASETS", "Dataset", "DatasetSource", "EventSchema", "Interactions", "ItemSchema", "LoadReport",
    "SplitConfig", "Store", "cold_item_split", "cold_user_split", "UserSchema", "ingest_source", "k_core", "leave_last_out", "load_dataset",
    "load_events", "load_items", "load_source", "load_users", "random_holdout", "register_dataset",
    "resolve_source", "split", "temporal_split", "to_implicit",
]
