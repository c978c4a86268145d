"""Exception types shared by every stage.

The library raises these; the CLI turns them into one line and an exit code, the service into a 4xx with
the same message. Each message says what was expected and what was found, so a person can act on it.
"""

from __future__ import annotations


class MosaicError(Exception):
    """Base class of every error mosaicrec raises on purpose."""


class ValidationError(MosaicError):
    """Input data does not match what the schema expects.

    ``where`` locates the problem (``events.csv row 1042``; rows count data records from 1); ``column`` names the field.
    """

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        self.source, self.row, self.column = source, row, column
        parts = []
        if source:
            parts.append(source)
        if row is not None:
            parts.append(f"row {row}")
        where = " ".join(parts)
        if column:
            where = f'{where}, column "{column}"' if where else f'column "{column}"'
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(MosaicError):
    """A configuration file or option is invalid."""


class DatasetNotFoundError(MosaicError):
    """A named dataset is unknown, or its files cannot be found or fetched."""


class UnknownUserError(MosaicError, KeyError):
    """A user id is not known to the store or the model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown user"


class UnknownItemError(MosaicError, KeyError):
    """An item id is not known to the store or the model."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown item"


class NotFittedError(MosaicError):
    """A model was asked to score before ``fit`` (or ``load``)."""


class StoreError(MosaicError):
    """The store cannot be opened or written."""


class StoreLockedError(StoreError):
    """Another process (a running service) holds the store."""


class NotSupportedError(MosaicError):
    """The model cannot do what was asked (e.g. an interaction-only model asked about a new user)."""
