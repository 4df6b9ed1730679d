"""CSV data manifests: which files belong together, validated before anything is trained.

A manifest is a CSV with one row per subject (synthesis) or per pair (registration); paths are
relative to a ``data_root`` given at run time, so a manifest can be shared between machines.

Synthesis columns (docs/conventions.md, data_manifests/README.md)::

    subject_id, split, source, target[, mask][, label][, site][, anatomy]

Registration columns::

    pair_id, split, fixed, moving[, fixed_label][, moving_label][, fixed_mask][, moving_mask]

Other columns are kept as metadata strings. :func:`read_manifest` validates the whole file
(columns, splits, duplicates, every path exists and stays inside ``data_root``) and returns a
MONAI-style datalist (a list of dicts) with absolute paths.
"""

from __future__ import annotations

import csv
import errno
import os
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.errors import Medi2iInputError
from medi2i.io import atomic_path
from medi2i.options import choose

if TYPE_CHECKING:  # medi2i.typing imports torch (~1 s); these modules must stay light
    from medi2i.typing import PathLike


class ManifestKind(str, Enum):
    """The two manifest shapes medi2i reads."""

    SYNTHESIS = "synthesis"
    REGISTRATION = "registration"


#: required columns, then optional path columns, per kind
REQUIRED_COLUMNS: dict[ManifestKind, tuple[str, ...]] = {
    ManifestKind.SYNTHESIS: ("subject_id", "split", "source", "target"),
    ManifestKind.REGISTRATION: ("pair_id", "split", "fixed", "moving"),
}
PATH_COLUMNS: dict[ManifestKind, tuple[str, ...]] = {  # "pred" / "ddf": results listed for medi2i evaluate
    ManifestKind.SYNTHESIS: ("source", "target", "mask", "label", "pred"),
    ManifestKind.REGISTRATION: ("fixed", "moving", "fixed_label", "moving_label", "fixed_mask", "moving_mask", "ddf"),
}
ID_COLUMN: dict[ManifestKind, str] = {ManifestKind.SYNTHESIS: "subject_id", ManifestKind.REGISTRATION: "pair_id"}
SPLITS: tuple[str, ...] = ("train", "val", "test")


def detect_kind(columns: Sequence[str], path: PathLike | None = None) -> ManifestKind:
    """Tell a synthesis manifest from a registration one by its id column.

    Example:
        >>> detect_kind(["pair_id", "split", "fixed", "moving"]).value
        'registration'
    """
    has = {kind for kind, column in ID_COLUMN.items() if column in columns}
    if len(has) != 1:
        raise Medi2iInputError(
            "cannot tell the manifest kind from its columns",
            path=path,
            field="header",
            found=list(columns),
            expected="exactly one of the id columns 'subject_id' (synthesis) or 'pair_id' (registration)",
        )
    return has.pop()


def _resolve_path(
    value: str, data_root: Path, *, manifest: Path, line: int, column: str, allow_outside_root: bool
) -> Path:
    """Resolve one manifest path against ``data_root`` and check that it is safe and exists."""
    where = f"line {line}, column '{column}'"
    raw = Path(value)
    if raw.is_absolute() and not allow_outside_root:
        raise Medi2iInputError(
            "absolute paths are not allowed in a manifest",
            path=manifest,
            field=where,
            found=value,
            expected="a path relative to data_root (or allow_outside_root=True)",
        )
    candidate = raw if raw.is_absolute() else data_root / raw
    # a lexical '..' escape is refused even if the target happens to exist
    lexical = Path(os.path.normpath(candidate))
    if not allow_outside_root and not lexical.is_relative_to(data_root):
        raise Medi2iInputError(
            "path escapes data_root", path=manifest, field=where, found=value, expected=f"a path inside {data_root}"
        )
    try:
        resolved = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise Medi2iInputError(
            "file does not exist", path=manifest, field=where, found=str(candidate), expected="an existing file"
        ) from None
    except (RuntimeError, OSError) as err:  # Python < 3.13 raises RuntimeError on symlink loops, later OSError(ELOOP)
        loop = isinstance(err, RuntimeError) or getattr(err, "errno", None) == errno.ELOOP
        raise Medi2iInputError(
            "symlink loop" if loop else f"cannot resolve path ({err})",
            path=manifest,
            field=where,
            found=value,
            expected="a path that resolves to a file",
        ) from None
    if not allow_outside_root and not resolved.is_relative_to(data_root):
        raise Medi2iInputError(
            "path resolves (through a symlink) outside data_root",
            path=manifest,
            field=where,
            found=f"{value} -> {resolved}",
            expected=f"a file inside {data_root} (or allow_outside_root=True)",
        )
    if not resolved.is_file():
        raise Medi2iInputError("not a regular file", path=manifest, field=where, found=str(resolved), expected="a file")
    return resolved


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = []
            for record in reader:
                if None in record:  # more cells than header columns
                    raise Medi2iInputError(
                        "row has more cells than the header",
                        path=path,
                        field=f"line {reader.line_num}",
                        found=len(columns) + len(record[None]),  # type: ignore[index]
                        expected=len(columns),
                    )
                cleaned = {k.strip(): (v or "").strip() for k, v in record.items() if k is not None}
                if any(cleaned.values()):  # blank lines are skipped
                    rows.append((reader.line_num, cleaned))
    except FileNotFoundError:
        raise Medi2iInputError("manifest not found", path=path, expected="an existing CSV file") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise Medi2iInputError(f"not a readable CSV file ({err})", path=path) from None
    if not columns:
        raise Medi2iInputError("manifest is empty", path=path, field="header", expected="a header row")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise Medi2iInputError("duplicate column names", path=path, field="header", found=duplicated)
    return columns, rows


def read_manifest(
    path: PathLike,
    data_root: PathLike,
    *,
    kind: ManifestKind | str | None = None,
    split: str | Iterable[str] | None = None,
    allow_outside_root: bool = False,
) -> list[dict[str, str]]:
    """Read and validate a whole manifest; return a MONAI-style datalist with absolute paths.

    Every row is checked before anything is returned: required columns present, ids unique and
    non-empty, split one of ``train``/``val``/``test``, every path relative, inside ``data_root``
    (no ``..`` escape, no symlink leading out, no symlink loop) and an existing file, no file
    used as the source of two synthesis subjects and no pair listed twice. Optional path columns
    must be filled for all selected rows or for none (a datalist with missing keys cannot be
    collated into batches).

    Args:
        path: the CSV file.
        data_root: folder the relative paths are resolved against.
        kind: ``"synthesis"`` or ``"registration"``; detected from the id column when ``None``.
        split: keep only these splits (validated against the known splits); ``None`` keeps all.
        allow_outside_root: accept absolute paths and symlinks that leave ``data_root``.

    Returns:
        One dict per selected row: path columns as absolute path strings, other columns as
        strings; empty optional cells are left out.

    Raises:
        Medi2iInputError: naming the manifest, the line and column, what was found and expected.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("a_t1.nii.gz", "a_t2.nii.gz"):
        ...     _ = (root / name).write_bytes(b"")
        >>> _ = (root / "m.csv").write_text("subject_id,split,source,target\\na,train,a_t1.nii.gz,a_t2.nii.gz\\n")
        >>> rows = read_manifest(root / "m.csv", root)
        >>> rows[0]["subject_id"], pathlib.Path(rows[0]["source"]).name
        ('a', 'a_t1.nii.gz')
    """
    manifest = Path(path)
    root = Path(data_root)
    if not root.is_dir():
        raise Medi2iInputError("data_root is not a folder", path=manifest, field="data_root", found=str(root))
    root = root.resolve()
    columns, rows = _read_rows(manifest)
    manifest_kind = (
        detect_kind(columns, manifest) if kind is None else choose(kind, ManifestKind, field="kind", path=str(manifest))
    )
    missing = [c for c in REQUIRED_COLUMNS[manifest_kind] if c not in columns]
    if missing:
        raise Medi2iInputError(
            f"missing required column '{missing[0]}'",
            path=manifest,
            field="header",
            found=columns,
            expected=f"columns {list(REQUIRED_COLUMNS[manifest_kind])} for a {manifest_kind.value} manifest",
        )
    if not rows:
        raise Medi2iInputError("manifest has no rows", path=manifest, expected="at least one row")
    wanted = _wanted_splits(split, manifest)
    id_column = ID_COLUMN[manifest_kind]
    path_columns = [c for c in PATH_COLUMNS[manifest_kind] if c in columns]
    seen_ids: dict[str, int] = {}
    seen_keys: dict[tuple[str, ...], int] = {}
    datalist: list[dict[str, str]] = []
    for line, row in rows:
        for column in REQUIRED_COLUMNS[manifest_kind]:
            if not row.get(column):
                raise Medi2iInputError(
                    "empty required cell", path=manifest, field=f"line {line}, column '{column}'", expected="a value"
                )
        row_split = row["split"]
        if row_split not in SPLITS:
            raise Medi2iInputError(
                "unknown split", path=manifest, field=f"line {line}, column 'split'", found=row_split, expected=SPLITS
            )
        identifier = row[id_column]
        if identifier in seen_ids:
            raise Medi2iInputError(
                f"duplicate {id_column}",
                path=manifest,
                field=f"line {line}",
                found=identifier,
                expected=f"unique ids (first seen on line {seen_ids[identifier]})",
            )
        seen_ids[identifier] = line
        # a source volume in two synthesis rows (or a pair listed twice) leaks data between splits
        key = (row["source"],) if manifest_kind is ManifestKind.SYNTHESIS else (row["fixed"], row["moving"])
        if key in seen_keys:
            raise Medi2iInputError(
                "duplicate " + ("source file" if manifest_kind is ManifestKind.SYNTHESIS else "(fixed, moving) pair"),
                path=manifest,
                field=f"line {line}",
                found=" -> ".join(key),
                expected=f"each listed once (first on line {seen_keys[key]})",
            )
        seen_keys[key] = line
        entry: dict[str, str] = {}
        for column, value in row.items():
            if column in path_columns:
                if value:
                    resolved = _resolve_path(
                        value, root, manifest=manifest, line=line, column=column, allow_outside_root=allow_outside_root
                    )
                    entry[column] = str(resolved)
            elif value:
                entry[column] = value
        if wanted is None or row_split in wanted:
            datalist.append(entry)
    _check_consistent_keys(datalist, path_columns, manifest)
    return datalist


def _wanted_splits(split: str | Iterable[str] | None, manifest: Path) -> set[str] | None:
    if split is None:
        return None
    wanted = {split} if isinstance(split, str) else set(split)
    unknown = sorted(wanted - set(SPLITS))
    if unknown:
        raise Medi2iInputError("unknown split requested", path=manifest, field="split", found=unknown, expected=SPLITS)
    return wanted


def _check_consistent_keys(datalist: list[dict[str, str]], path_columns: Sequence[str], manifest: Path) -> None:
    for column in path_columns:
        filled = [column in entry for entry in datalist]
        if any(filled) and not all(filled):
            empty = [i for i, f in enumerate(filled) if not f][:5]
            raise Medi2iInputError(
                "optional path column is filled for some rows and empty for others",
                path=manifest,
                field=f"column '{column}'",
                found=f"{filled.count(False)} empty of {len(filled)} selected rows (e.g. rows {empty})",
                expected="all filled or all empty",
            )


def write_manifest(path: PathLike, rows: Sequence[dict[str, str]], *, kind: ManifestKind | str) -> Path:
    """Write a manifest atomically with the kind's required columns first.

    Args:
        path: destination CSV.
        rows: dicts with at least the kind's required columns; paths should be relative to the data root.
        kind: ``"synthesis"`` or ``"registration"``.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "pairs.csv"
        >>> _ = write_manifest(out, [{"pair_id": "p0", "split": "train", "fixed": "a.nii.gz", "moving": "b.nii.gz"}],
        ...                    kind="registration")
        >>> out.read_text().splitlines()[0]
        'pair_id,split,fixed,moving'
    """
    manifest_kind = choose(kind, ManifestKind, field="kind", path=str(path))
    required = list(REQUIRED_COLUMNS[manifest_kind])
    extra: list[str] = []
    for row in rows:
        missing = [c for c in required if not row.get(c)]
        if missing:
            raise Medi2iInputError("row lacks required columns", path=path, field=str(missing), found=row)
        extra += [c for c in row if c not in required and c not in extra]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=required + extra)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
