"""Resolve option strings to enum members, suggesting the nearest valid value.

This does what ``monai.utils.look_up_option`` does for the core modules (``medi2i.io``,
``medi2i.data.manifest``, the CLI) without importing MONAI: ``import monai`` takes ~4 s on the
CI machines because it imports all of MONAI, and ``medi2i check`` must answer fast. Modules
that already depend on MONAI (transforms, networks, engines) use ``look_up_option`` directly.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from medi2i.errors import Medi2iInputError

E = TypeVar("E", bound=Enum)
V = TypeVar("V")


def choose(value: str | E, options: type[E], *, field: str, path: str | None = None) -> E:
    """Return the member of ``options`` named by ``value`` (member or its string value).

    Raises:
        Medi2iInputError: naming ``field``, the value received, the allowed values and the closest one.

    Example:
        >>> from medi2i.data.manifest import ManifestKind
        >>> choose("registration", ManifestKind, field="kind").name
        'REGISTRATION'
        >>> try:
        ...     choose("synthesys", ManifestKind, field="kind")
        ... except Medi2iInputError as err:
        ...     print(err.message)
        unknown option, did you mean 'synthesis'?
    """
    if isinstance(value, options):
        return value
    allowed = [str(member.value) for member in options]
    text = str(value.value) if isinstance(value, Enum) else str(value)
    for member in options:
        if str(member.value) == text:
            return member
    raise _unknown(text, allowed, field=field, path=path)


def choose_key(value: str, options: Mapping[str, V], *, field: str, path: str | None = None) -> V:
    """Return ``options[value]``, or raise the same suggestion-bearing error as :func:`choose`.

    Example:
        >>> choose_key("ixi", {"lpba40": 1, "ixi": 2}, field="dataset")
        2
        >>> try:
        ...     choose_key("lpba", {"lpba40": 1, "ixi": 2}, field="dataset")
        ... except Medi2iInputError as err:
        ...     print(err.message)
        unknown option, did you mean 'lpba40'?
    """
    if value in options:
        return options[value]
    raise _unknown(str(value), list(options), field=field, path=path)


def _unknown(text: str, allowed: list[str], *, field: str, path: str | None) -> Medi2iInputError:
    close = difflib.get_close_matches(text, allowed, n=1)
    hint = f", did you mean '{close[0]}'?" if close else ""
    return Medi2iInputError(
        f"unknown option{hint}", path=path, field=field, found=repr(text), expected=f"one of {allowed}"
    )
