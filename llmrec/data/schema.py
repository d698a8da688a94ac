"""Raw tables -> validated, typed tables: the column mapping and every check on input data.

A user's own schema is described by a :class:`ColumnMapping` (from Python, YAML or CLI flags).
Validation is strict: anything wrong raises :class:`~llmrec.data.errors.DataError` naming the
file, line and column. Where the user opts in to dropping rows (unknown items, users without
interactions), what is dropped is counted in the report.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from llmrec.data.catalog import Catalog
from llmrec.data.dataset import RecDataset
from llmrec.data.errors import DataError
from llmrec.data.readers import RawTable

logger = logging.getLogger(__name__)

_YEAR = re.compile(r"(1[5-9]\d\d|2\d\d\d)")


@dataclass
class ColumnMapping:
    """Which column of the user's files holds which field.

    Defaults are the standard names (RecBole ML-100K's own names are covered too: ``movie_title``,
    ``release_year``, ``class``). Optional fields set to ``None`` are looked up under their default
    names and skipped when absent; a name given explicitly must exist.
    """

    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str = "timestamp"
    rating: str | None = None
    behavior: str | None = None
    #: Interaction columns kept as context (e.g. device, session); default: all other columns.
    context: list[str] | None = None
    title: str | None = None
    year: str | None = None
    categories: str | None = None
    #: Separator of categories in one cell (``None``: "|" or "," or a RecBole token_seq).
    categories_sep: str | None = None
    description: str | None = None

    _DEFAULT_NAMES = {
        "rating": ("rating",),
        "behavior": ("behavior", "behaviour", "event", "event_type", "action"),
        "title": ("title", "movie_title", "name"),
        "year": ("year", "release_year"),
        "categories": ("categories", "category", "genres", "genre", "class"),
        "description": ("description", "desc", "overview", "summary"),
    }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ColumnMapping:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            close = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
            raise ValueError(
                f"unknown column-mapping keys {unknown}; valid keys are {sorted(known)}"
                + "".join(f"; did you mean {c[0]!r} for {u!r}?" for u, c in close.items() if c)
            )
        return cls(**values)

    def resolve(self, name: str, columns: list[str]) -> str | None:
        """The actual column for optional field ``name`` in ``columns``, or ``None`` if absent."""
        given = getattr(self, name)
        if given is not None:
            return given
        for candidate in self._DEFAULT_NAMES.get(name, ()):
            if candidate in columns:
                return candidate
        return None


@dataclass
class LoadOptions:
    """What to do with input that is wrong but recoverable. The default is to refuse it."""

    #: Drop interactions whose item is not in the items table (counted) instead of failing.
    drop_unknown_items: bool = False
    #: Drop users of the users table that have no interaction (counted) instead of failing.
    drop_users_without_interactions: bool = False
    report: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers
def _require(table: RawTable, column: str, role: str) -> None:
    cols = list(table.frame.columns)
    if column in cols:
        return
    close = difflib.get_close_matches(column, cols, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise table.error(
        f"missing {role} column {column!r}",
        row=table.header_line,
        column=column,
        hint=f"{hint}the file has columns {cols}; map yours with the column mapping "
        f"(e.g. --col {role}=YOUR_COLUMN)",
    )


def _first_missing(table: RawTable, column: str) -> None:
    values = table.frame[column]
    missing = values.isna()
    if missing.any():
        pos = int(np.flatnonzero(missing.to_numpy())[0])
        raise table.error(
            f"{int(missing.sum())} rows have no value",
            pos,
            column=column,
            expected="a value",
            got=None,
        )


#: Timestamps are seconds since the epoch: from 1970-01-01 up to (not including) 3000-01-01.
#: Larger values are nearly always milliseconds or microseconds; negative ones, a sign or
#: offset error (or relative times, which can be shifted to start at 0).
MAX_TIMESTAMP = 32_503_680_000.0


def _check_range(table: RawTable, column: str, seconds: pd.Series) -> None:
    """Refuse negative, non-finite and far-future timestamps: how many rows, and the first."""
    values = seconds.to_numpy(dtype=float)
    negative = values < 0
    too_large = ~(values < MAX_TIMESTAMP) & ~negative  # inf and NaN too
    for bad, what, hint in (
        (
            negative,
            "negative timestamp",
            "timestamps are seconds since 1970-01-01; if yours are relative times, shift them "
            "so that the earliest is 0",
        ),
        (
            too_large,
            "timestamp out of range (in the year 3000 or later, or not finite)",
            "values this large are usually milliseconds or microseconds since the epoch: "
            "divide them by 1,000 or 1,000,000 to get seconds",
        ),
    ):
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            count = int(bad.sum())
            raise table.error(
                f"{count} {'row has' if count == 1 else 'rows have'} a {what}; the first is here",
                pos,
                column=column,
                expected="seconds since the epoch, from 0 (1970-01-01) to below "
                f"{MAX_TIMESTAMP:.0f} (3000-01-01)",
                got=table.cell(column, pos),
                hint=hint,
            )


def _to_seconds(table: RawTable, column: str) -> pd.Series:
    seconds = _parse_seconds(table, column)
    _check_range(table, column, seconds)
    return seconds


def _stored_numbers(table: RawTable, column: str) -> pd.Series | None:
    """The column as float64 when the source stored it as numbers (a typed table), else
    ``None``: then it is text to parse."""
    values = table.frame[column]
    if not table.typed or not isinstance(values.dtype, np.dtype) or values.dtype.kind not in "iuf":
        return None
    return values.astype(float)


def _parse_seconds(table: RawTable, column: str) -> pd.Series:
    _first_missing(table, column)
    stored = _stored_numbers(table, column)
    if stored is not None:
        return stored
    raw = table.text(column)
    numeric = pd.to_numeric(raw, errors="coerce")
    bad = numeric.isna()
    if bad.any():
        # Either every row is a number, or every row an ISO-8601 date/time: report the first row
        # that breaks the format most rows use.
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
        if int((~bad).sum()) > int(parsed.notna().sum()):
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise table.error(
                "timestamp is not a number (most rows are)",
                pos,
                column=column,
                expected="seconds since the epoch",
                got=table.cell(column, pos),
            )
        still_bad = parsed.isna()
        if still_bad.any():
            pos = int(np.flatnonzero(still_bad.to_numpy())[0])
            raise table.error(
                "timestamp is neither a number nor an ISO-8601 date/time",
                pos,
                column=column,
                expected="seconds since the epoch or e.g. 2024-05-01T12:00:00",
                got=table.cell(column, pos),
            )
        return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().astype(float)
    return numeric.astype(float)


# --------------------------------------------------------------------------- tables
def normalize_interactions(table: RawTable, mapping: ColumnMapping) -> pd.DataFrame:
    """Validated interactions: user_id, item_id (str), timestamp (float), [rating], [behavior],
    context columns; rows in table order."""
    for role in ("user_id", "item_id", "timestamp"):
        _require(table, getattr(mapping, role), role)
    cols = list(table.frame.columns)
    out = pd.DataFrame(
        {
            "user_id": table.text(mapping.user_id),
            "item_id": table.text(mapping.item_id),
        }
    )
    _first_missing(table, mapping.user_id)
    _first_missing(table, mapping.item_id)
    out["timestamp"] = _to_seconds(table, mapping.timestamp)
    used = {mapping.user_id, mapping.item_id, mapping.timestamp}
    rating_col = mapping.resolve("rating", cols)
    if rating_col is not None:
        _require(table, rating_col, "rating")
        out["rating"] = _ratings(table, rating_col)
        used.add(rating_col)
    behavior_col = mapping.resolve("behavior", cols)
    if behavior_col is not None:
        _require(table, behavior_col, "behavior")
        out["behavior"] = table.text(behavior_col).fillna("interaction").astype(str)
        used.add(behavior_col)
    context = mapping.context if mapping.context is not None else [c for c in cols if c not in used]
    for c in context:
        _require(table, c, "context")
        out[c] = table.text(c)
    out["user_id"] = out["user_id"].astype(str)
    out["item_id"] = out["item_id"].astype(str)
    return out.reset_index(drop=True)


def _ratings(table: RawTable, column: str) -> pd.Series:
    """The rating column as float64 (missing values NaN); text that is not a number is refused."""
    stored = _stored_numbers(table, column)
    if stored is not None:
        return stored
    text = table.text(column)
    ratings = pd.to_numeric(text, errors="coerce")
    bad = ratings.isna() & text.notna()
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise table.error(
            "rating is not a number",
            pos,
            column=column,
            expected="a number",
            got=table.cell(column, pos),
        )
    return ratings.astype(float)


def normalize_items(table: RawTable, mapping: ColumnMapping, report: list[str]) -> pd.DataFrame:
    """Validated items: item_id, title, year, categories (list), description, attribute columns."""
    _require(table, mapping.item_id, "item_id")
    _first_missing(table, mapping.item_id)
    cols = list(table.frame.columns)
    frame = table.strings()
    title_col = mapping.resolve("title", cols)
    if title_col is None:
        raise table.error(
            "no title column",
            row=table.header_line,
            hint=f"the file has columns {cols}; map one with --col title=YOUR_COLUMN",
        )
    _require(table, title_col, "title")
    year_col = mapping.resolve("year", cols)
    cat_col = mapping.resolve("categories", cols)
    desc_col = mapping.resolve("description", cols)
    for name, col in (("year", year_col), ("categories", cat_col), ("description", desc_col)):
        if col is not None:
            _require(table, col, name)

    out = pd.DataFrame({"item_id": frame[mapping.item_id].astype(str)})
    titles = frame[title_col]
    out["title"] = titles.fillna("").astype(str).str.strip()
    n_untitled = int((out["title"] == "").sum())
    if n_untitled:
        report.append(
            f"items: {n_untitled} items have no title (kept; text views see an empty title)"
        )
    out["year"] = (
        _parse_years(frame[year_col], report)
        if year_col
        else pd.array([None] * len(frame), dtype="Int64")
    )
    if cat_col is not None:
        sep = mapping.categories_sep
        is_seq = cat_col in table.seq_columns
        out["categories"] = [_split_categories(v, sep, is_seq) for v in frame[cat_col]]
    else:
        out["categories"] = [[] for _ in range(len(frame))]
    out["description"] = frame[desc_col] if desc_col else None
    used = {mapping.item_id, title_col, year_col, cat_col, desc_col}
    for c in cols:
        if c not in used:
            out[c] = frame[c]
    return _dedupe(out, "item_id", table, report, what="items")


def normalize_users(table: RawTable, mapping: ColumnMapping, report: list[str]) -> pd.DataFrame:
    """Validated users: user_id plus every other column as a profile field.

    The index is each row's position in ``table``, so that later checks can name its line.
    """
    _require(table, mapping.user_id, "user_id")
    _first_missing(table, mapping.user_id)
    out = table.strings().rename(columns={mapping.user_id: "user_id"}).copy()
    out["user_id"] = out["user_id"].astype(str)
    return _dedupe(out, "user_id", table, report, what="users")


def _dedupe(
    frame: pd.DataFrame, key: str, table: RawTable, report: list[str], what: str
) -> pd.DataFrame:
    dup_mask = frame[key].duplicated(keep=False)
    if not dup_mask.any():
        return frame
    comparable = frame.map(lambda v: tuple(v) if isinstance(v, list) else v)
    for key_value, rows in comparable[dup_mask].groupby(key, sort=False):
        distinct = rows.drop_duplicates()
        if len(distinct) > 1:
            first, second = distinct.index[:2]
            diff = [
                c
                for c in frame.columns
                if not _same(comparable.at[first, c], comparable.at[second, c])
            ]
            raise table.error(
                f"{what[:-1]} id {key_value!r} appears twice with different values in {diff}",
                int(second),
                column=diff[0] if diff else key,
                expected=repr(comparable.at[first, diff[0]]) if diff else None,
                got=comparable.at[second, diff[0]] if diff else None,
                hint="make each id unique or remove the conflicting row",
            )
    before = len(frame)
    frame = frame[~comparable[key].duplicated(keep="first")]
    report.append(f"{what}: removed {before - len(frame)} exact duplicate rows")
    return frame


def _same(a: Any, b: Any) -> bool:
    """Cell equality where missing values (None, NaN, pd.NA) equal each other."""
    a_missing, b_missing = _is_missing(a), _is_missing(b)
    if a_missing or b_missing:
        return a_missing and b_missing
    return bool(a == b)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _parse_years(values: pd.Series, report: list[str]) -> pd.Series:
    years: list[int | None] = []
    unparsed = 0
    for v in values:
        m = _YEAR.search(v) if isinstance(v, str) else None
        if m:
            years.append(int(m.group(1)))
        else:
            years.append(None)
            unparsed += not _is_missing(v)
    if unparsed:
        report.append(f"items: {unparsed} year values are not a year (kept as missing)")
    return pd.array(years, dtype="Int64")


def _split_categories(value: Any, sep: str | None, is_token_seq: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    if sep is None:
        sep = " " if is_token_seq else ("|" if "|" in text else ",")
    return [part.strip() for part in text.split(sep) if part.strip()]


# --------------------------------------------------------------------------- assembly
def build_dataset(
    name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    options: LoadOptions | None = None,
    *,
    interactions_source: str | RawTable = "interactions",
    users_source: str | RawTable | None = None,
) -> RecDataset:
    """Cross-check the tables and sort interactions into sequences (user, time, file order).

    A source given as the :class:`RawTable` the frame was normalized from lets errors name the
    file line: ``interactions`` rows are then in table order, and the ``users`` index holds each
    row's position in its table (as :func:`normalize_interactions` and :func:`normalize_users`
    return them).
    """
    options = options or LoadOptions()
    report = options.report
    if items is None:
        ids = pd.unique(interactions["item_id"])
        items = pd.DataFrame(
            {
                "item_id": ids,
                "title": ids,
                "year": pd.array([None] * len(ids), dtype="Int64"),
                "categories": [[] for _ in ids],
                "description": None,
            }
        )
        report.append(f"items: no items table given; {len(ids)} items titled by their ids")
    catalog = Catalog(_pandas_dtypes(items))
    known = interactions["item_id"].isin(pd.Index(catalog.ids))
    if not known.all():
        n_bad = int((~known).sum())
        pos = int(np.flatnonzero(~known.to_numpy())[0])
        if not options.drop_unknown_items:
            raise _source_error(
                interactions_source,
                f"{n_bad} interactions refer to items missing from the items table",
                pos,
                column="item_id",
                expected="an id from the items table",
                got=interactions["item_id"].iloc[pos],
                hint="fix the ids, add the items, or pass --drop-unknown-items to drop them",
            )
        interactions = interactions[known]
        report.append(f"interactions: dropped {n_bad} with item ids not in the items table")
    if users is None:
        users = pd.DataFrame({"user_id": pd.unique(interactions["user_id"])})
    else:
        active = users["user_id"].isin(pd.Index(interactions["user_id"].unique()))
        if not active.all():
            n_idle = int((~active).sum())
            if not options.drop_users_without_interactions:
                first = users["user_id"][~active].iloc[0]
                raise _source_error(
                    users_source,
                    f"{n_idle} users in the users table have no interactions, e.g. {first!r}",
                    int(users.index[~active.to_numpy()][0]),
                    column="user_id",
                    hint="pass --drop-users-without-interactions to drop them (they are counted)",
                )
            users = users[active].reset_index(drop=True)
            report.append(f"users: dropped {n_idle} users with no interactions")
        missing_profile = ~pd.Index(interactions["user_id"].unique()).isin(users["user_id"])
        if missing_profile.any():
            report.append(
                f"users: {int(missing_profile.sum())} users with interactions have no profile row"
            )
    return RecDataset(
        name=name,
        catalog=catalog,
        users=_pandas_dtypes(users.reset_index(drop=True)),
        interactions=_pandas_dtypes(sort_interactions(interactions)),
        report=report,
    )


def _pandas_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns retyped as pandas types their values (strings with missing values become
    ``str`` on pandas 3): what a Parquet round trip gives, so that a dataset just built and the
    same dataset loaded from disk have identical tables."""
    frame = frame.copy()
    for c in frame.columns:
        if frame[c].dtype == object:
            frame[c] = pd.Series(frame[c].tolist(), index=frame.index)
    return frame


def _source_error(source: str | RawTable | None, message: str, pos: int, **kw: Any) -> DataError:
    if isinstance(source, RawTable):
        return source.error(message, pos, **kw)
    return DataError(message, source=source, row=pos, row_label="record", **kw)


def sort_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    """Users in order of first appearance; each user's rows by timestamp, ties in file order."""
    inter = interactions.reset_index(drop=True)
    user_order = pd.Series(pd.factorize(inter["user_id"])[0], index=inter.index)
    order = np.lexsort(
        (np.arange(len(inter)), inter["timestamp"].to_numpy(), user_order.to_numpy())
    )
    return inter.iloc[order].reset_index(drop=True)
