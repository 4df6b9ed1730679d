"""The error types medi2i raises for bad user input.

Every check of user-provided data (files, manifests, configs, CLI arguments) raises
:class:`Medi2iInputError`, a ``ValueError`` subclass whose message names the file (or config
key), the field, what was found and what was expected. The CLI turns it into one line on
stderr and exit code 2.
"""

from __future__ import annotations

import os
from typing import Any


class Medi2iError(Exception):
    """Base class of all errors raised on purpose by medi2i."""


class Medi2iInputError(Medi2iError, ValueError):
    """Bad user input, detected before anything is built or written.

    Args:
        message: what is wrong, in one sentence.
        path: the file (or manifest, or config file) concerned, if any.
        field: the header field, column, config key or argument concerned, if any.
        found: what was found (rendered with ``repr`` for short values).
        expected: what was expected.

    Example:
        >>> err = Medi2iInputError("voxel spacing must be positive", path="ct.nii.gz", field="pixdim",
        ...                        found=(1.0, 0.0, 1.0), expected="> 0 and finite")
        >>> print(err)
        ct.nii.gz: pixdim: voxel spacing must be positive (found (1.0, 0.0, 1.0); expected > 0 and finite)
        >>> isinstance(err, ValueError)
        True
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        field: str | None = None,
        found: Any = None,
        expected: Any = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.field = field
        self.found = found
        self.expected = expected
        super().__init__(self._render())

    def _render(self) -> str:
        where = ": ".join(part for part in (self.path, self.field) if part)
        text = f"{where}: {self.message}" if where else self.message
        details = []
        if self.found is not None:
            details.append(f"found {self.found}")
        if self.expected is not None:
            details.append(f"expected {self.expected}")
        if details:
            text += f" ({'; '.join(details)})"
        return text
