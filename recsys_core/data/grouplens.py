"""GroupLens MovieLens files (ml-100k or ml-1m format), from a directory or a .zip.

Offline twin of TFDS `movielens/100k-ratings` / `1m-ratings`: the same labels,
the same age buckets, and the ratings in the order TFDS stores them (sorted by
md5("train" + row index)), so that the TFRS tutorials' `shuffle(seed=42)` split
is reproduced exactly from the raw files.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from recsys_core.data.movielens import GENRES, OCCUPATIONS, bucketize_age, movielens_schema
from recsys_core.data.tables import RATINGS_SCHEMA, DataError, InteractionData

# u.item's 19 genre flags, in file order, named as TFDS names them.
_ML100K_GENRES = (
    "Unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
# u.user occupations -> TFDS occupation labels (TFDS merges some of them).
_ML100K_OCCUPATIONS = {
    "administrator": "clerical/admin", "artist": "artist", "doctor": "doctor/health care",
    "educator": "academic/educator", "engineer": "technician/engineer",
    "entertainment": "entertainment", "executive": "executive/managerial",
    "healthcare": "doctor/health care", "homemaker": "homemaker", "lawyer": "lawyer",
    "librarian": "librarian", "marketing": "sales/marketing", "none": "other/not specified",
    "other": "other/not specified", "programmer": "programmer", "retired": "retired",
    "salesman": "sales/marketing", "scientist": "scientist", "student": "student",
    "technician": "technician/engineer", "writer": "writer",
}  # fmt: skip
# users.dat occupation index -> text (ml-1m README).
_ML1M_OCCUPATIONS = (
    "other/not specified", "academic/educator", "artist", "clerical/admin",
    "college/grad student", "customer service", "doctor/health care", "executive/managerial",
    "farmer", "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
    "scientist", "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed",
    "writer",
)  # fmt: skip

_FORMATS = {"ml-100k": ("u.data", "u.user", "u.item"), "ml-1m": ("ratings.dat", "users.dat", "movies.dat")}


def read_grouplens(path: str) -> InteractionData:
    """Reads a MovieLens directory or zip in the original ml-100k or ml-1m format.

    Raises:
        DataError: the path or a file is missing, or a line is malformed; the
            message names the file and line.
    """
    files = _Files(path)
    fmt = next((name for name, needed in _FORMATS.items() if needed[0] in files), None)
    if fmt is None:
        raise DataError(
            f"{path} holds neither u.data (ml-100k format) nor ratings.dat (ml-1m format); "
            "point --data-path at an unpacked GroupLens MovieLens directory or its .zip"
        )
    ratings_file, users_file, items_file = _FORMATS[fmt]
    schema = movielens_schema()
    users_schema, items_schema = schema.table_schema("user"), schema.table_schema("item")
    for name in _FORMATS[fmt]:
        if name not in files:
            raise DataError(f"{files.describe(name)} is missing: a {fmt} directory needs {', '.join(_FORMATS[fmt])}")
    if fmt == "ml-100k":
        users = _table(users_schema, files.rows(users_file, "|", 5, _ml100k_user))
        items = _table(items_schema, files.rows(items_file, "|", 24, _ml100k_item))
        ratings = _table(RATINGS_SCHEMA, files.rows(ratings_file, "\t", 4, _rating))
    else:
        users = _table(users_schema, files.rows(users_file, "::", 5, _ml1m_user))
        items = _table(items_schema, files.rows(items_file, "::", 3, _ml1m_item))
        ratings = _table(RATINGS_SCHEMA, files.rows(ratings_file, "::", 4, _rating))
    ratings = ratings.take(tfds_order(ratings.num_rows))
    lineage = {"source": "grouplens", "format": fmt, "path": os.path.abspath(path), "num_ratings": ratings.num_rows}
    return InteractionData(ratings=ratings, users=users, items=items, schema=schema, lineage=lineage)


def tfds_order(num_rows: int) -> np.ndarray:
    """Row indices in the order TFDS stores the examples: by md5("train" + str(index))."""
    keys = [hashlib.md5(f"train{i}".encode()).digest() for i in range(num_rows)]
    return np.array(sorted(range(num_rows), key=keys.__getitem__), dtype=np.int64)


class _Files:
    """The files of a GroupLens directory or zip, opened by base name."""

    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.isdir(path):
            self._names = {name: os.path.join(path, name) for name in os.listdir(path)}
        elif os.path.isfile(path) and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                self._names = {os.path.basename(n): n for n in archive.namelist() if not n.endswith("/")}
        elif os.path.exists(path):
            raise DataError(f"{path} is neither a directory nor a .zip archive of GroupLens MovieLens files")
        else:
            raise DataError(
                f"MovieLens data not found at {path}: download ml-100k.zip from "
                "https://grouplens.org/datasets/movielens/ and pass its path (or the unpacked "
                "directory) with --data-path, or use --data-source tfds"
            )

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def describe(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _text(self, name: str) -> str:
        if os.path.isdir(self.path):
            with open(self._names[name], "rb") as handle:
                data = handle.read()
        else:
            with zipfile.ZipFile(self.path) as archive:
                data = archive.read(self._names[name])
        return io.TextIOWrapper(io.BytesIO(data), encoding="latin-1").read()  # GroupLens files are Latin-1

    def rows(self, name: str, sep: str, width: int, parse: Callable[[list[str]], tuple]) -> Iterator[tuple]:
        """Parses each non-empty line; errors name the file and the 1-based line number."""
        for number, line in enumerate(self._text(name).splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split(sep)
            try:
                if len(fields) != width:
                    raise ValueError(f"expected {width} fields separated by {sep!r}, found {len(fields)}")
                yield parse(fields)
            except (ValueError, KeyError, IndexError) as error:
                raise DataError(f"{self.describe(name)}, line {number}: {error}: {line[:120]!r}") from None


def _table(schema: pa.Schema, rows: Iterator[tuple]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) or [[] for _ in schema]
    return pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema)


def _rating(fields: list[str]) -> tuple:
    user_id, movie_id, rating, timestamp = fields
    value = float(rating)
    if not 0.0 <= value <= 5.0:
        raise ValueError(f"rating {rating} is outside 0..5")
    return user_id.strip(), movie_id.strip(), value, int(timestamp)


def _user(user_id: str, gender: str, age: float, bucket: int, occupation: str, label: str, zip_code: str) -> tuple:
    if gender not in ("M", "F"):
        raise ValueError(f"gender {gender!r} is neither M nor F")
    return user_id, gender == "M", age, bucket, OCCUPATIONS.index(label), occupation, zip_code.strip()


def _ml100k_user(fields: list[str]) -> tuple:
    user_id, age, gender, occupation, zip_code = fields
    raw_age = float(int(age))
    label = _ML100K_OCCUPATIONS[occupation]
    return _user(user_id, gender, raw_age, int(bucketize_age(raw_age)), occupation, label, zip_code)


def _ml1m_user(fields: list[str]) -> tuple:
    user_id, gender, age, occupation_index, zip_code = fields
    occupation = _ML1M_OCCUPATIONS[int(occupation_index)]
    label = "student" if occupation in ("K-12 student", "college/grad student") else occupation
    # ml-1m only has age buckets; the bucket stands in for the raw age.
    return _user(user_id, gender, float(age), int(age), occupation, label, zip_code)


def _ml100k_item(fields: list[str]) -> tuple:
    flags = fields[5:]
    if any(flag not in ("0", "1") for flag in flags):
        raise ValueError("genre flags must be 0 or 1")
    genres = [_ML100K_GENRES[i] for i, flag in enumerate(flags) if flag == "1"]
    return fields[0], fields[1], genres


def _ml1m_item(fields: list[str]) -> tuple:
    movie_id, title, genres = fields
    names = ["Children" if g == "Children's" else g for g in genres.split("|")]
    unknown = [name for name in names if name not in GENRES]
    if unknown:
        raise ValueError(f"genre {unknown[0]!r} is not a MovieLens genre ({', '.join(GENRES)})")
    return movie_id, title, names
