"""The ``movielens`` loader on fixtures the tests write (ML-100K, ML-1M, ML-latest), and on the real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cemg_ray.data.catalog import DataError
from cemg_ray.data.loaders import detect_format, load_catalog

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens-posters"
FLAGS = "|".join(["0"] * 19)


def _ml100k(root: Path) -> Path:
    folder = root / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text(
        "1\t10\t5\t300\n1\t20\t3\t100\n1\t30\t4\t100\n"  # user 1: time 100 twice -> item 20 before item 30
        "2\t10\t2\t50\n2\t30\tfive\t60\n"  # a bad rating: counted and skipped
        "bad line\n"
        "x\t10\t4\t70\n")  # a non-integer user id
    anim = ["0"] * 19
    anim[3] = "1"  # Animation
    (folder / "u.item").write_bytes(
        f"10|Toy Story (1995)|01-Jan-1995||url|{'|'.join(anim)}\n".encode()
        + f"20|Caf\xe9 Society (1995)|01-Jan-1995||url|{FLAGS}\n".encode("latin-1")
        + f"30|Heat (1995)|01-Jan-1995||url|{FLAGS}\n".encode())
    (root / "data").mkdir()
    (root / "data" / "items.csv").write_text(
        "movie_id,title,overview\n10,Toy Story,Toys come alive.\n10,Toy Story (dup),Ignored.\n30,Heat,A heist.\n")
    (root / "data" / "posters").mkdir()
    (root / "data" / "posters" / "10.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_ml100k_layout_with_overviews_posters_and_bad_rows(tmp_path) -> None:
    root = _ml100k(tmp_path / "ml")
    assert detect_format(root) == "movielens"
    cat = load_catalog("movielens", str(root))
    ids = cat.items.column("item_id").to_pylist()
    assert ids == ["10", "20", "30"]
    assert cat.user_ids == ["1", "2"]
    # time order, a tie at t=100 broken by item id
    assert [ids[i] for i in cat.sequences[0]] == ["20", "30", "10"]
    assert [ids[i] for i in cat.sequences[1]] == ["10"]
    text = cat.items.column("text").to_pylist()
    assert "Toy Story (1995)" in text[0] and "Animation" in text[0] and "Toys come alive." in text[0]
    assert "Café Society" in text[1]  # Latin-1 decoded
    assert "A heist." in text[2]
    uris = cat.items.column("image_uri").to_pylist()
    assert uris[0].endswith("posters/10.jpg") and uris[1] is None and uris[2] is None
    assert cat.items.column("genres").to_pylist()[0] == ["Animation"]
    skipped = cat.report.to_dict()["skipped"]
    assert skipped == {"non_numeric_rating_or_time": 1, "wrong_field_count": 1, "non_integer_id": 1,
                       "overview_duplicate_id": 1}


def test_rating_threshold_keeps_only_high_ratings(tmp_path) -> None:
    cat = load_catalog("movielens", str(_ml100k(tmp_path / "ml")), min_rating=4)
    ids = cat.items.column("item_id").to_pylist()
    assert [[ids[i] for i in s] for s in cat.sequences] == [["30", "10"]]
    assert cat.report.to_dict()["skipped"]["below_min_rating"] == 2


def test_ml1m_and_ml_latest_layouts(tmp_path) -> None:
    m1 = tmp_path / "ml-1m"
    m1.mkdir()
    (m1 / "ratings.dat").write_text("1::5::4::20\n1::7::3::10\n")
    (m1 / "movies.dat").write_text("5::Alien (1979)::Horror|Sci-Fi\n7::Babe (1995)::Children's|Comedy\n")
    cat = load_catalog("movielens", str(m1))
    assert cat.items.column("item_id").to_pylist() == ["5", "7"] and cat.sequences[0].tolist() == [1, 0]
    assert "Sci-Fi" in cat.items.column("text").to_pylist()[0]
    latest = tmp_path / "latest"
    latest.mkdir()
    (latest / "ratings.csv").write_text("userId,movieId,rating,timestamp\n3,2,4.5,9\n3,1,1.0,8\n")
    (latest / "movies.csv").write_text('movieId,title,genres\n1,"Heat, The (1995)",Action|Crime\n2,Up (2009),'
                                       "(no genres listed)\n")
    cat = load_catalog("movielens", str(latest))
    assert cat.sequences[0].tolist() == [0, 1]
    assert cat.items.column("genres").to_pylist() == [["Action", "Crime"], []]


def test_structural_problems_are_named_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="no MovieLens ratings file"):
        load_catalog("movielens", str(tmp_path))
    m1 = tmp_path / "dup"
    m1.mkdir()
    (m1 / "ratings.dat").write_text("1::5::4::20\n")
    (m1 / "movies.dat").write_text("5::A::Drama\n5::B::Drama\n")
    with pytest.raises(DataError, match="duplicate item id '5'"):
        load_catalog("movielens", str(m1))


@pytest.mark.skipif(not REAL.exists(), reason="the real MovieLens-100K with posters is not on this machine")
def test_real_movielens_posters_catalog() -> None:
    cat = load_catalog("movielens", str(REAL))
    stats = cat.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100_000)
    assert stats["items_with_image"] == 1663 and stats["items_with_text"] == 1682
    with_overview = sum("Description:" in t for t in cat.items.column("text").to_pylist())
    assert with_overview == 1664
    # user 1's sequence follows u.data's timestamps
    rows = [line.split("\t") for line in (REAL / "ml-100k" / "u.data").read_text().splitlines()]
    first = sorted((int(t), int(i)) for u, i, _, t in rows if u == "1")
    ids = cat.items.column("item_id").to_pylist()
    assert [int(ids[k]) for k in cat.sequences[0]] == [i for _, i in first]
