"""The feature contract: names, order, encodings, bounds and cleaning of raw rows.

Training, serving, the prediction log and drift all use this one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SPECIES: tuple[str, ...] = ("Adelie", "Chinstrap", "Gentoo")

NUMERIC_FEATURES: tuple[str, ...] = (
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("island_encoded", "sex_encoded")
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
TARGET = "species"

# Not alphabetical on purpose (Torgersen is the first island sampled): a LabelEncoder
# would give Biscoe=0 and break every client that sends codes.
ISLAND_CODES: dict[str, int] = {"Torgersen": 0, "Biscoe": 1, "Dream": 2}
SEX_CODES: dict[str, int] = {"Female": 0, "Male": 1}
CATEGORY_CODES: dict[str, dict[str, int]] = {
    "island_encoded": ISLAND_CODES,
    "sex_encoded": SEX_CODES,
}


@dataclass(frozen=True)
class Bounds:
    """Closed interval of plausible values for one numeric feature."""

    low: float
    high: float
    unit: str

    def contains(self, value: float) -> bool:
        """Return whether the value lies inside the interval."""
        return self.low <= value <= self.high


# The one place the plausible ranges live. Observed ranges in the data set are
# bill length 32-60 mm, bill depth 13-22 mm, flipper 172-231 mm, mass 2.7-6.3 kg;
# the bounds leave room for unseen but real birds and reject unit mistakes
# (metres, kilograms) and absurd values.
BOUNDS: dict[str, Bounds] = {
    "bill_length_mm": Bounds(10.0, 100.0, "mm"),
    "bill_depth_mm": Bounds(5.0, 40.0, "mm"),
    "flipper_length_mm": Bounds(100.0, 300.0, "mm"),
    "body_mass_g": Bounds(1000.0, 10000.0, "g"),
}

RAW_COLUMNS = ("species", "island", "sex", *NUMERIC_FEATURES)


class DataError(ValueError):
    """The data file is missing, unreadable or does not hold the penguins table."""


_BY_LOWER_NAME: dict[str, dict[str, str]] = {
    feature: {name.lower(): name for name in codes} for feature, codes in CATEGORY_CODES.items()
}


def canonical_name(feature: str, name: str) -> str | None:
    """Return the spelling of a category name as in the codes, matched in any case; else None.

    Surrounding spaces are ignored. ``feature`` is ``island_encoded`` or ``sex_encoded``.
    """
    return _BY_LOWER_NAME[feature].get(name.strip().lower())


_CODE_BY_LOWER_NAME: dict[str, dict[str, int]] = {
    feature: {name.lower(): code for name, code in codes.items()}
    for feature, codes in CATEGORY_CODES.items()
}


def code_of(feature: str, name: str) -> int | None:
    """Return the code of a category name, in any case; None for an unknown name.

    One dictionary look-up: the batch fast path calls it for every sample sent by name.
    """
    return _CODE_BY_LOWER_NAME[feature].get(name.strip().lower())


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Turn raw penguins rows into model rows: the six features in order plus species.

    Rows missing any feature, or outside the bounds, are dropped: they cannot be
    sent to the API either, so the model must not learn from them.
    """
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"data is missing columns: {', '.join(missing)}")
    rows = raw.dropna(subset=list(RAW_COLUMNS)).copy()
    rows["island_encoded"] = rows["island"].map(lambda s: code_of("island_encoded", str(s)))
    rows["sex_encoded"] = rows["sex"].map(lambda s: code_of("sex_encoded", str(s)))
    rows = rows.dropna(subset=list(CATEGORICAL_FEATURES))
    rows = rows[rows[TARGET].isin(SPECIES)]
    for name, bounds in BOUNDS.items():
        rows = rows[rows[name].between(bounds.low, bounds.high)]
    out = rows[list(FEATURES)].astype(
        {**{n: "float64" for n in NUMERIC_FEATURES}, **{c: "int64" for c in CATEGORICAL_FEATURES}}
    )
    out[TARGET] = rows[TARGET].astype(str)
    return out.reset_index(drop=True)


def load_dataset(path: str | Path) -> pd.DataFrame:
    """Read and clean the penguins CSV, raising DataError with one clear line on failure."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse {path} as CSV: {exc}") from None
    data = clean(raw)
    if len(data) < 30 or data[TARGET].nunique() < len(SPECIES):
        raise DataError(
            f"{path} has {len(data)} usable rows covering {data[TARGET].nunique()} species; "
            f"need at least 30 rows and all of {', '.join(SPECIES)}"
        )
    return data
