import os
import shutil
import zipfile

import numpy as np
import pytest

from recsys_core.data.grouplens import read_grouplens
from recsys_core.data.movielens import OCCUPATIONS
from recsys_core.data.tables import DataError


def test_reads_every_row_in_tfds_order(ml100k):
    assert (ml100k.ratings.num_rows, ml100k.users.num_rows, ml100k.items.num_rows) == (100_000, 943, 1682)
    # The first example TFDS yields for movielens/100k-ratings (shared split README).
    assert ml100k.ratings.slice(0, 1).to_pylist() == [
        {"user_id": "138", "item_id": "357", "rating": 4.0, "timestamp": 879024327}
    ]


def test_examples_match_tfds_own_parser(ml100k, ml100k_path):
    from tensorflow_datasets.structured import movielens_parsing

    expected = {}
    for row, example in movielens_parsing.parse_100k_ratings_data(ml100k_path):
        if row % 997 == 0:
            expected[(example["user_id"], example["movie_id"])] = example
    examples = ml100k.examples.to_pylist()
    ours = {(e["user_id"], e["item_id"]): e for e in examples if (e["user_id"], e["item_id"]) in expected}
    assert len(ours) == len(expected) > 90
    for key, theirs in expected.items():
        mine = ours[key]
        assert mine["rating"] == float(theirs["user_rating"])
        assert mine["timestamp"] == int(theirs["timestamp"])
        assert mine["movie_title"] == theirs["movie_title"]
        assert sorted(mine["movie_genres"]) == sorted(theirs["movie_genres"])
        assert OCCUPATIONS[mine["user_occupation_label"]] == theirs["user_occupation_label"]
        assert mine["user_occupation_text"] == theirs["user_occupation_text"]
        assert mine["user_gender"] == theirs["user_gender"]
        assert mine["raw_user_age"] == theirs["raw_user_age"]
        assert mine["bucketized_user_age"] == theirs["bucketized_user_age"]
        assert mine["user_zip_code"] == theirs["user_zip_code"]


def test_latin1_titles_decode(ml100k):
    titles = ml100k.items["movie_title"].to_pylist()
    assert any("é" in title for title in titles)


def test_reads_the_zip_archive_too(ml100k, ml100k_path, tmp_path):
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name in ("u.data", "u.user", "u.item"):
            handle.write(os.path.join(ml100k_path, name), f"ml-100k/{name}")
    from_zip = read_grouplens(str(archive))
    assert from_zip.ratings.equals(ml100k.ratings)
    assert from_zip.items.equals(ml100k.items)


def _copy(ml100k_path, tmp_path):
    target = tmp_path / "ml-100k"
    target.mkdir()
    for name in ("u.data", "u.user", "u.item"):
        shutil.copy(os.path.join(ml100k_path, name), target / name)
    return target


def test_missing_directory_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"not found at .*nowhere.*--data-path"):
        read_grouplens(str(tmp_path / "nowhere"))


def test_missing_file_is_named(ml100k_path, tmp_path):
    target = _copy(ml100k_path, tmp_path)
    os.remove(target / "u.item")
    with pytest.raises(DataError, match=r"u\.item is missing"):
        read_grouplens(str(target))


def test_malformed_line_names_file_and_line(ml100k_path, tmp_path):
    target = _copy(ml100k_path, tmp_path)
    lines = (target / "u.data").read_text().splitlines()
    lines[4] = "196\t242\tthree\t881250949"
    (target / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"u\.data, line 5: .*three"):
        read_grouplens(str(target))


def test_rating_for_unknown_movie_is_reported(ml100k_path, tmp_path):
    target = _copy(ml100k_path, tmp_path)
    with open(target / "u.data", "a") as handle:
        handle.write("1\t99999\t3\t881250949\n")
    with pytest.raises(DataError, match=r"item_id '99999'.*items table"):
        read_grouplens(str(target))


def test_ml1m_format(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n2::20::3::978302109\n")
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::Toy Story (1995)::Animation|Children's|Comedy\n20::Café (1999)::Drama\n".encode("latin-1")
    )
    data = read_grouplens(str(tmp_path))
    examples = {e["user_id"]: e for e in data.examples.to_pylist()}
    assert examples["1"]["movie_genres"] == ["Animation", "Children", "Comedy"]
    assert examples["1"]["user_occupation_text"] == "K-12 student"
    assert OCCUPATIONS[examples["1"]["user_occupation_label"]] == "student"
    assert examples["2"]["bucketized_user_age"] == 56.0 and examples["2"]["user_gender"]
    assert examples["2"]["movie_title"] == "Café (1999)"
    assert np.isclose(examples["1"]["rating"], 5.0)
