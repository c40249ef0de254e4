"""The columnar text loaders (``sequences``, ``json``, ``amazon``, ``movielens``) give exactly what the per-interaction
loaders they replaced gave: the same item table, sequence table, user ids, load report (counts, first examples, the
order the reasons were met) and stats, or the same error, on the loader tests' fixtures, on malformed rows,
duplicates, k-core removal cascades and ties in time, and on a few thousand random interactions per format.

The per-interaction loaders are kept in ``cemg_ray.bench.data`` as the benchmark's baseline; they are the oracle here.
"""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest

from cemg_ray.bench.data import (
    TEXT_FORMATS,
    reference_kcore,
    reference_load,
    reference_sequences_table,
    write_synthetic_text,
)
from cemg_ray.data import loaders
from cemg_ray.data.catalog import DataError
from cemg_ray.data.loaders import kcore, load_catalog
from cemg_ray.data.movielens import _read_lines


def assert_same(fmt: str, path, **kw) -> None:
    """Both loaders give identical outputs, or both fail with the same message."""
    try:
        old = reference_load(fmt, path, **kw)
    except DataError as exc:
        with pytest.raises(DataError) as new_exc:
            load_catalog(fmt, str(path), **kw)
        assert str(new_exc.value) == str(exc)
        return
    new = load_catalog(fmt, str(path), **kw)
    assert new.items.equals(old.items), (new.items.to_pydict(), old.items.to_pydict())
    assert new.sequences_table().equals(reference_sequences_table(old))
    assert new.report.to_dict() == old.report.to_dict()
    assert list(new.report.skipped) == list(old.report.skipped)  # the reasons in the order they were met
    assert list(new.report.examples) == list(old.report.examples)
    assert new.stats() == old.stats()
    assert new.user_ids == old.user_ids
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(new.sequences, old.sequences))


# -- sequences -------------------------------------------------------------------------------------------------------
def _text(name: str, content: str | bytes):
    def write(d):
        d.mkdir(parents=True, exist_ok=True)
        p = d / name
        if name.endswith(".gz"):
            p.write_bytes(gzip.compress(content.encode() if isinstance(content, str) else content))
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        return p
    return write


SEQUENCES = {
    "malformed_lines": _text("s.txt", "1 10 11 12\n2\n\n3 11 12 13 14\n1 9 9\n"),
    "not_utf8": _text("s.txt", b"u1 1 2 3\nu2 \xff\xfe 4 5\nu3 1 2 4\n"),
    "non_integer_items": _text("s.txt", "u1 1 2 3\nu2 4 x5 6\nu3 1 \u00b2 2\n"),
    # users of every kind in the natural order: negative, leading zeros, equal values, non-ASCII digits, strings
    "natural_user_order": _text("s.txt", "10 5 6\n9 6 7\nb 1 2\n-3 7 5\na 8\n007 1 100\n7 3\n\u0663 2 9\n"
                                         "-0 4\n0 4 4 4\n"),
    "crlf_and_tabs": _text("s.txt", "2 3 1\r\n1\t2  3\r\n\r\n3 0010 9\r\n"),
    "gzipped": _text("s.txt.gz", "1 3 2 1\n2 2 2\n"),
    "every_line_bad": _text("s.txt", "1\n2\nx 1 y\n"),
    "empty_file": _text("s.txt", ""),
    "folder": lambda d: (_text("b.txt", "1 1 2\n")(d), _text("a.txt", "5 3 2\n4 2\n")(d), d)[2],
    "folder_without_txt": lambda d: (d.mkdir(parents=True), d)[1],
}


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_sequences_same_as_the_per_interaction_loader(tmp_path, name) -> None:
    assert_same("sequences", SEQUENCES[name](tmp_path / "ds"))


def test_sequences_items_of_equal_value_are_numbered_in_order_of_first_appearance(tmp_path) -> None:
    """``007`` and ``7`` sort equal: the per-interaction loader left their order to a set's hash order, the columnar
    one numbers them as the lines first meet them (the parquet loader's rule)."""
    p = _text("s.txt", "1 5 007 2\n2 7 3\n")(tmp_path)
    ids = load_catalog("sequences", str(p)).items.column("item_id").to_pylist()
    assert ids == ["2", "3", "5", "007", "7"]


# -- json ------------------------------------------------------------------------------------------------------------
def _json(inter: str | bytes | dict, items: str | bytes | dict | None = None, name: str = "X"):
    def write(d):
        d.mkdir(parents=True, exist_ok=True)
        for suffix, content in ((".inter.json", inter), (".item.json", items)):
            if content is None:
                continue
            p = d / f"{name}{suffix}"
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content if isinstance(content, str) else json.dumps(content))
        return d
    return write


_META = {"0": {"title": "a"}, "1": {"title": "b"}, "2": 5, "3": {"title": "d"}}
JSONS = {
    "bad_rows_and_structure": _json({"0": [0, 1, 2], "1": "oops", "2": [1, 2, 3, 4]}, _META),
    "repeated_ids": _json('{"0": [0, 1, 2], "1": [1, 2, 3], "0": [3, 2]}',
                          '{"0": {"title": "first"}, "1": {"title": "b"}, "2": {"title": "c"}, "3": {"title": "d"}, '
                          '"0": {"title": "second"}}'),
    # a repeated user whose first sequence is bad stays out; repeats are reported ahead of the bad sequences
    "repeat_of_a_bad_user": _json('{"a": "oops", "b": [1, true], "c": [], "a": [2, 3], "d": [4], "b": [5], '
                                  '"d": {"x": 1}}'),
    "pretty_printed": _json(json.dumps({"10": [3, "1", 2], "9": [1], "x": ["2", 7]}, indent=2) + "\n\n",
                            json.dumps({"1": {"title": "one", "brand": "B", "categories": "c1,c2"},
                                        "3": {"title": "three", "description": "three's"}}, indent=4)),
    "wrong_meta_types": _json({"u1": ["a", "b", "c"], "u2": ["a", "c", "b"]},
                              {"a": {"title": 5}, "b": {"title": ["x", "y"], "brand": "B"},
                               "c": {"title": "ok", "description": {"k": 1}}}),
    # items missing from the item file: after it, in the order users (file order) and their items first meet them
    "items_without_metadata_walk_order": _json({"z": ["m9", "a1"], "3": ["a1", "q"], "1": ["b", "m9", "zz"]},
                                               {"b": {"title": "B"}, "a1": {"title": "A"}}),
    "no_item_file": _json({"2": [5, 3], "1": [3, 10, 9]}),
    "item_file_without_one_object": _json({"2": [5, 3], "1": [3, 10, 9]}, {"3": 1, "5": "x"}),
    "escapes_and_unicode": _json('{"\\u00e9t\\u00e9": ["a\\"b", "\\u00e9"], "caf\\u00e9": ["\\u00e9", "x"], '
                                 '"t\\tab": [1]}'),
    "int_and_str_of_one_id": _json('{"u": [1, "1", 2, "03", -5, 100000000000000000000]}'),
    "wrong_item_types": _json('{"a": [1.5], "b": [null], "c": [[1]], "d": [NaN], "e": [{"k": 1}], "f": [1]}'),
    "top_level_list": _json("[1, 2]"),
    "not_json": _json("{not json"),
    "empty_file": _json(""),
    "empty_object": _json(" { } "),
    "every_sequence_bad": _json('{"a": [], "b": "x"}'),
    "not_utf8": _json(b'{"u1": ["a", "\xff"]}'),
    "byte_order_mark": _json('\ufeff{"u": [1]}'),
    "trailing_comma": _json('{"u": [1],}'),
    "extra_data": _json('{"u": [1]} {"v": [2]}'),
    "truncated": _json('{"u": [1], "v": [2, 3'),
    "missing_colon": _json('{"u" [1]}'),
    "key_not_a_string": _json('{u: [1]}'),
    "control_character_in_a_key": _json('{"a\tb": [1]}'),
    "deeply_nested_value": _json('{"u": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "deeply_nested_item_file": _json({"u1": ["a"]}, '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "item_file_not_an_object": _json({"u1": ["a"]}, "[1]"),
}


@pytest.mark.parametrize("name", sorted(JSONS))
def test_json_same_as_the_per_interaction_loader(tmp_path, name) -> None:
    assert_same("json", JSONS[name](tmp_path / "ds"))


def test_json_inter_file_path_given_directly(tmp_path) -> None:
    d = JSONS["repeated_ids"](tmp_path / "ds")
    assert_same("json", d / "X.inter.json")


@pytest.mark.parametrize("name", ["bad_rows_and_structure", "repeated_ids", "repeat_of_a_bad_user",
                                  "items_without_metadata_walk_order", "escapes_and_unicode"])
def test_json_whole_file_fallback_gives_the_same(tmp_path, monkeypatch, name) -> None:
    """A file the streaming walk does not follow is read whole by ``json.loads``; that path gives the same too."""
    def refuse(text):
        raise loaders._NotAnObject
        yield  # a generator, as the walk is

    monkeypatch.setattr(loaders, "_json_object_pairs", refuse)
    assert_same("json", JSONS[name](tmp_path / "ds"))


def test_json_streaming_walk_yields_every_pair_with_repeats() -> None:
    text = ' {"a" : [1, 2] ,\n "b":{"x": 1, "x": 2}, "a": "again", "c": []}\n'
    pairs = list(loaders._json_object_pairs(text))
    assert [k for k, _ in pairs] == ["a", "b", "a", "c"]
    assert pairs[0][1] == [1, 2] and pairs[1][1] == {"x": 1} and pairs[1][1].duplicates == ["x"]
    for bad in ("[1]", '{"a": [1]', '{"a": [1]} x', '{"a": [1],}', "{'a': [1]}", ""):
        with pytest.raises(loaders._NotAnObject):
            list(loaders._json_object_pairs(bad))


def test_json_id_that_is_not_valid_unicode_is_a_named_error(tmp_path) -> None:
    _json('{"u": ["\\ud800"]}')(tmp_path)
    with pytest.raises(DataError, match=r"X.inter.json: a item id is not valid Unicode"):
        load_catalog("json", str(tmp_path))


# -- amazon ----------------------------------------------------------------------------------------------------------
def _lines_file(path, rows: list, gz: bool = False) -> None:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def _review(u, i, t="absent"):
    r = {"reviewerID": u, "asin": i}
    if t != "absent":
        r["unixReviewTime"] = t
    return r


def _amazon_loader_fixture(d):
    """tests/data/test_loaders.py's fixture: gzip, a 5-core removal, a missing time, a broken line, literal meta."""
    d.mkdir(parents=True)
    rows = [_review(f"U{u}", f"A{(u + i) % 6}", 100 * i + u) for u in range(6) for i in range(5)]
    rows += [_review("U9", "A0", 1), _review("U1", "A1"), "{broken"]
    _lines_file(d / "reviews_X_5.json.gz", rows, gz=True)
    (d / "meta_X.json").write_text("".join(repr({"asin": f"A{a}", "title": f"T{a}",
                                                 "categories": [["Beauty", "Nails"]]}) + "\n" for a in range(6)))
    return d


def _cascade(d):
    """At k=2: u4's single review goes first, which leaves item c with one review, which takes u3 below 2, which
    leaves item b with two reviews but d with one, ... each round removes what the last one exposed."""
    d.mkdir(parents=True)
    rows = [_review("u1", "a", 1), _review("u1", "b", 2), _review("u2", "a", 3), _review("u2", "b", 4),
            _review("u3", "b", 5), _review("u3", "c", 6), _review("u4", "c", 7), _review("u5", "d", 8),
            _review("u5", "a", 9), _review("u6", "d", 10)]
    _lines_file(d / "reviews.json", rows)
    _lines_file(d / "meta.json", [{"asin": i, "title": i.upper()} for i in "abcd"])
    return d


def _duplicates_between_reasons(d):
    """The first duplicate is met after a missing asin and before a bad time; another in the second file repeats a
    pair of the first; unparseable lines do not count as records."""
    d.mkdir(parents=True)
    _lines_file(d / "a_reviews.json", [
        _review("u1", "x", 5), "not json", {"reviewerID": "u2", "unixReviewTime": 3}, _review("u2", "y", 4),
        _review("u1", "x", 9), _review("u3", "y", "soon"), _review("u3", "x", "7"), _review("u2", "x", 4.0)])
    _lines_file(d / "b_reviews.json", ["[1]", _review("u2", "y", 1), _review("u1", "y", 2), _review("u3", "y")])
    _lines_file(d / "meta_b.json", [{"asin": "x", "title": "X", "imUrl": ["http://x/1.jpg", "http://x/2.jpg"]},
                                    {"asin": "y", "title": "Y", "imageURLHighRes": 5},
                                    {"title": "no asin"}, {"asin": "x", "title": "X again", "category": ["c"]}])
    return d


def _duplicate_first(d):
    d.mkdir(parents=True)
    _lines_file(d / "reviews.json", [_review("u", "a", 1), _review("u", "a", 2),
                                     {"reviewerID": "u", "unixReviewTime": 3}, _review("v", "a", 1), "{broken"])
    return d


def _duplicate_last(d):
    d.mkdir(parents=True)
    _lines_file(d / "reviews.json", ["{broken", {"reviewerID": "u", "unixReviewTime": 3}, _review("u", "a", 1),
                                     _review("v", "a", "t"), _review("u", "b", 2), _review("u", "a", 3)])
    return d


def _times_of_every_kind(d):
    """Equal times in file order; times as strings, floats, negative, beyond 2**53, true."""
    d.mkdir(parents=True)
    _lines_file(d / "reviews.json", [
        _review("u", "c", 5), _review("u", "a", "5"), _review("u", "b", 4.5), _review("u", "d", -1),
        _review("u", "e", 1e20), _review("u", "f", True), _review("v", "a", 0.0), _review("v", "b", -0.0),
        _review("v", "c", 1e19), _review("v", "d", 1e19 + 4096), _review(7, 8, 1), _review("w", "a", "1e3")])
    return d


def _no_valid_review(d):
    d.mkdir(parents=True)
    _lines_file(d / "reviews.json", [_review("u", "a"), "{broken"])
    return d


def _nothing_left(d):
    d.mkdir(parents=True)
    _lines_file(d / "reviews.json", [_review("u", "a", 1), _review("v", "b", 2)])
    return d


def _not_utf8_line(d):
    d.mkdir(parents=True)
    rows = [json.dumps(_review(f"u{u}", f"a{i}", i)).encode() for u in range(3) for i in range(3)]
    (d / "reviews.json").write_bytes(b"\n".join(rows + [b'{"reviewerID": "\xff"}']) + b"\n")
    return d


def _truncated_gzip(d):
    d.mkdir(parents=True)
    lines = b"".join(json.dumps(_review(f"u{n}", "a", n)).encode() + b"\n" for n in range(2000))
    (d / "reviews.json.gz").write_bytes(gzip.compress(lines)[:-200])
    return d


def _empty_review_file(d):
    d.mkdir(parents=True)
    (d / "reviews.json").write_text("")
    return d


AMAZON = {
    "loader_fixture": _amazon_loader_fixture,
    "cascade": _cascade,
    "duplicates_between_reasons": _duplicates_between_reasons,
    "duplicate_first": _duplicate_first,
    "duplicate_last": _duplicate_last,
    "times_of_every_kind": _times_of_every_kind,
    "no_valid_review": _no_valid_review,
    "nothing_left": _nothing_left,
    "not_utf8_line": _not_utf8_line,
    "truncated_gzip": _truncated_gzip,
    "empty_review_file": _empty_review_file,
    "only_meta": lambda d: (d.mkdir(parents=True), _lines_file(d / "meta.json", [{"asin": "a"}]), d)[2],
}


@pytest.mark.parametrize("k", [0, 1, 2, 5])
@pytest.mark.parametrize("name", sorted(AMAZON))
def test_amazon_same_as_the_per_interaction_loader(tmp_path, name, k) -> None:
    assert_same("amazon", AMAZON[name](tmp_path / "ds"), kcore_k=k)


def test_amazon_cascade_removes_in_rounds(tmp_path) -> None:
    cat = load_catalog("amazon", str(_cascade(tmp_path / "ds")), kcore_k=2)
    ids = cat.items.column("item_id").to_pylist()
    assert cat.user_ids == ["u1", "u2"] and ids == ["a", "b"]
    assert cat.report.skipped["removed_by_2core"] == 6


def test_amazon_path_that_is_a_file_is_an_error(tmp_path) -> None:
    p = tmp_path / "reviews.json"
    p.write_text("{}\n")
    assert_same("amazon", p)


@pytest.mark.parametrize("seed", [0, 1])
def test_kcore_on_arrays_keeps_the_rows_the_per_tuple_kcore_keeps(seed) -> None:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 300, 4000)
    items = np.minimum((rng.random(4000) ** 3 * 200).astype(np.int64), 199)
    for k in range(7):
        kept = reference_kcore([(int(u), int(i), n) for n, (u, i) in enumerate(zip(users, items))], k)
        assert kcore(users, items, k).tolist() == [n for _, _, n in kept]
    assert kcore(np.zeros(0, np.int64), np.zeros(0, np.int64), 5).tolist() == []


# -- movielens -------------------------------------------------------------------------------------------------------
FLAGS = "|".join(["0"] * 19)


def _ml100k(d):
    """tests/data/test_movielens.py's fixture: a tie in time, a bad rating, a bad line, a non-integer user, Latin-1
    titles, overviews with a repeated id, one poster."""
    folder = d / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("1\t10\t5\t300\n1\t20\t3\t100\n1\t30\t4\t100\n2\t10\t2\t50\n2\t30\tfive\t60\n"
                                   "bad line\nx\t10\t4\t70\n")
    anim = ["0"] * 19
    anim[3] = "1"
    (folder / "u.item").write_bytes(f"10|Toy Story (1995)|01-Jan-1995||url|{'|'.join(anim)}\n".encode()
                                    + f"20|Caf\xe9 Society (1995)|01-Jan-1995||url|{FLAGS}\n".encode("latin-1")
                                    + f"30|Heat (1995)|01-Jan-1995||url|{FLAGS}\n".encode())
    (d / "data").mkdir()
    (d / "data" / "items.csv").write_text("movie_id,title,overview\n10,Toy Story,Toys come alive.\n"
                                          "10,Toy Story (dup),Ignored.\n30,Heat,A heist.\n")
    (d / "data" / "posters").mkdir()
    (d / "data" / "posters" / "10.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return d


def _ties_and_ids(d, equal_values: bool = False):
    """Equal times broken by the item's value (9 before 10, as int, not as string); repeated ratings kept; users 9
    and 10 by value, ``01`` and ``1`` by first appearance; items listed but unrated, rated but unlisted; every line
    break ``str.splitlines`` knows. ``equal_values``: items ``07`` and ``7`` too (the old loader numbered those in
    a set's hash order)."""
    folder = d / "ml-100k"
    folder.mkdir(parents=True)
    breaks = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
    rows = ["10\t10\t4\t5", "10\t9\t4\t5", "10\t100\t1\t5", "9\t7\t3\t1", "9\t8\t3\t1", "9\t7\t5\t1",
            "10\t3\t2\t4.5", "9\t300\t2\t-1", "\u0661\u0660\t5\t5\t0", "1\t\u00b3\t1\t1", "01\t2\t2\t2",
            "1\t2\t2\t2"] + (["9\t07\t3\t1", "9\t7\t1\t1"] if equal_values else [])
    (folder / "u.data").write_text("".join(r + breaks[n % len(breaks)] for n, r in enumerate(rows)) + "\n")
    (folder / "u.item").write_text("".join(f"{i}|Movie {i}|01-Jan-1995||url|{FLAGS}\n" for i in (3, 9, 10, 500))
                                   + "x|bad|id||url\n" + f"11|few fields|{FLAGS[:5]}\n")
    return d


def _ml1m(d):
    d.mkdir(parents=True)
    (d / "ratings.dat").write_text("1::5::4::20\n1::7::3::10\n2::5::1::10\n2::7::1::10\n")
    (d / "movies.dat").write_text("5::Alien (1979)::Horror|Sci-Fi\n7::Babe (1995)::Children's|Comedy\n")
    return d


def _latest(header: bool):
    def write(d):
        d.mkdir(parents=True)
        (d / "ratings.csv").write_text(("userId,movieId,rating,timestamp\n" if header else "")
                                       + "3,2,4.5,9\n3,1,1.0,8\n4,2,x,1\n4,1,2,1,extra\n")
        (d / "movies.csv").write_text('movieId,title,genres\n1,"Heat, The (1995)",Action|Crime\n'
                                      "2,Up (2009),(no genres listed)\n")
        return d
    return write


def _no_ratings(d):
    d.mkdir(parents=True)
    (d / "ratings.dat").write_text("bad\n1::2::x::3\n")
    return d


MOVIELENS = {"ml100k": (_ml100k, {}), "ml100k_min_rating": (_ml100k, {"min_rating": 4}),
             "ties_and_ids": (_ties_and_ids, {}), "ml1m": (_ml1m, {}), "latest_with_header": (_latest(True), {}),
             "latest_without_header": (_latest(False), {}), "no_ratings": (_no_ratings, {}),
             "no_layout": (lambda d: (d.mkdir(parents=True), d)[1], {})}


@pytest.mark.parametrize("name", sorted(MOVIELENS))
def test_movielens_same_as_the_per_interaction_loader(tmp_path, name) -> None:
    write, kw = MOVIELENS[name]
    d = write(tmp_path / "ds")
    if name == "ties_and_ids":  # "³" is a digit to isdigit() but not to int(): the old parse raised ValueError on it
        u_data = d / "ml-100k" / "u.data"
        u_data.write_bytes(u_data.read_bytes().replace("1\t\u00b3\t1\t1".encode(), b"1\tx\t1\t1"))
    assert_same("movielens", d, **kw)


def test_movielens_items_of_equal_value_are_ordered_by_their_string(tmp_path) -> None:
    """``07`` and ``7`` are one value: the item table has them in string order (the per-interaction loader left it
    to a set's hash order), and a user's ratings at one time order by value, then string, as before."""
    cat = load_catalog("movielens", str(_ties_and_ids(tmp_path / "ds", equal_values=True)))
    ids = cat.items.column("item_id").to_pylist()
    assert ids.index("07") + 1 == ids.index("7")
    user9 = [ids[i] for i in cat.sequences[cat.user_ids.index("9")]]
    assert user9 == ["300", "07", "7", "7", "7", "8"]


def test_movielens_superscript_digits_are_a_counted_non_integer_id(tmp_path) -> None:
    """``"³".isdigit()`` is true but ``int("³")`` fails: the per-interaction parse died on such an id with a
    ValueError; the columnar one counts it as the non-integer id it is."""
    cat = load_catalog("movielens", str(_ties_and_ids(tmp_path / "ds")))
    assert cat.report.skipped["non_integer_id"] == 1
    assert "\u00b3" not in cat.items.column("item_id").to_pylist()


def test_read_lines_splits_as_splitlines(tmp_path) -> None:
    rng = random.Random(0)
    alphabet = ["a", "b", " ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
                "\u2029", "\u00e9"]
    for n in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        p = tmp_path / f"{n}.txt"
        p.write_bytes(text.encode("utf-8"))
        assert list(_read_lines(p)) == text.splitlines(), repr(text)
    p = tmp_path / "latin1.txt"
    p.write_bytes(b"caf\xe9\x85next\r\nlast")  # not UTF-8: Latin-1, where \x85 is a line break
    assert list(_read_lines(p)) == ["café", "next", "last"]


# -- random catalogs, each format ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_same_outputs_on_random_catalogs(tmp_path, fmt) -> None:
    """``cemg-ray bench data``'s synthetic text datasets: skewed popularity, 30 distinct days (ties in time),
    malformed rows, items without metadata; the amazon one at k = 5 and 3 (k-core cascades) and with repeated
    pairs."""
    info = write_synthetic_text(tmp_path / fmt, fmt, 30_000, 3_000, 1_500, seed=5, bad_share=0.01, days=30)
    assert info["malformed_rows"] > 0
    for kw in ({"kcore_k": 5}, {"kcore_k": 3}) if fmt == "amazon" else ({},):
        assert_same(fmt, tmp_path / fmt, **kw)


def test_same_outputs_on_random_movielens(tmp_path) -> None:
    rng = random.Random(2)
    folder = tmp_path / "ml" / "ml-100k"
    folder.mkdir(parents=True)
    rows = []
    for n in range(20_000):
        rows.append(f"{rng.randint(1, 400)}\t{rng.randint(1, 900)}\t{rng.randint(1, 5)}\t{rng.randint(0, 300)}")
        if n % 500 == 0:
            rows.append(rng.choice(["bad", "1\t2\tx\t3", "u\t1\t1\t1", "1\t2\t3"]))
    (folder / "u.data").write_text("\n".join(rows) + "\n")
    (folder / "u.item").write_text("".join(f"{i}|Movie {i}|01-Jan-1995||url|{FLAGS}\n" for i in range(1, 800)))
    assert_same("movielens", tmp_path / "ml")
    assert_same("movielens", tmp_path / "ml", min_rating=3)


def test_bench_data_measures_a_text_format(tmp_path) -> None:
    """``cemg-ray bench data --format amazon``: both paths in their own processes, identical outputs."""
    from cemg_ray.bench.data import PATHS, run
    from cemg_ray.cli import build_parser

    out = run([3000], tmp_path, fmt="amazon")
    (row,) = out["sizes"]
    assert out["format"] == "amazon" and row["identical_outputs"] is True and set(row["paths"]) == set(PATHS)
    assert row["dataset"]["bytes_on_disk"] > 0
    args = build_parser().parse_args(["bench", "data", "--format", "json", "--interactions", "1000"])
    assert args.format == "json"
