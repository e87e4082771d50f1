"""The data set and the shared feature contract."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from penguins.config import DEFAULT_DATA_PATH as DATA_PATH
from penguins.features import (
    BOUNDS,
    CATEGORICAL_FEATURES,
    FEATURES,
    ISLAND_CODES,
    SEX_CODES,
    SPECIES,
    DataError,
    canonical_name,
    clean,
    code_of,
    load_dataset,
)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """Return the committed CSV as it is on disk."""
    return pd.read_csv(DATA_PATH)


def test_csv_is_the_palmer_penguins_table(raw):
    assert len(raw) == 344
    assert {"species", "island", "sex", "bill_length_mm", "body_mass_g"} <= set(raw.columns)
    assert set(raw["species"]) == set(SPECIES)
    assert set(raw["island"]) == set(ISLAND_CODES)


def test_feature_order_is_the_contract():
    assert FEATURES == (
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "island_encoded",
        "sex_encoded",
    )


def test_island_codes_are_not_alphabetical():
    assert ISLAND_CODES == {"Torgersen": 0, "Biscoe": 1, "Dream": 2}
    assert SEX_CODES == {"Female": 0, "Male": 1}


@pytest.mark.parametrize(
    ("name", "code"), [("Torgersen", 0), ("biscoe", 1), ("DREAM", 2), (" Dream ", 2)]
)
def test_island_names_encode_in_any_case(name, code):
    assert code_of("island_encoded", name) == code
    assert canonical_name("island_encoded", name) in ISLAND_CODES


@pytest.mark.parametrize(("name", "code"), [("female", 0), ("MALE", 1), ("Male", 1)])
def test_sex_names_encode_in_any_case(name, code):
    assert code_of("sex_encoded", name) == code
    assert canonical_name("sex_encoded", name) in SEX_CODES


@pytest.mark.parametrize(("feature", "name"), [("island_encoded", "Atlantis"), ("sex_encoded", "")])
def test_an_unknown_name_has_no_code(feature, name):
    assert code_of(feature, name) is None
    assert canonical_name(feature, name) is None


def test_torgersen_row_encodes_as_zero(raw):
    first = raw.iloc[[0]]
    assert first["island"].item() == "Torgersen"
    row = clean(first).iloc[0]
    assert row["island_encoded"] == 0
    assert row["sex_encoded"] == SEX_CODES[first["sex"].item().capitalize()]


def test_clean_drops_incomplete_rows_and_keeps_the_rest(raw):
    data = load_dataset(DATA_PATH)
    complete = raw.dropna(subset=["sex", "bill_length_mm", "bill_depth_mm"])
    assert len(data) == len(complete) == 333
    assert list(data.columns) == [*FEATURES, "species"]
    assert not data.isna().any().any()
    for name in CATEGORICAL_FEATURES:
        assert data[name].dtype == "int64"


def test_every_row_is_inside_the_bounds(raw):
    for name, bounds in BOUNDS.items():
        values = raw[name].dropna()
        assert values.map(bounds.contains).all(), name
        assert math.isfinite(bounds.low) and bounds.low > 0


def test_rows_outside_the_bounds_are_dropped(raw):
    bad = raw.head(3).copy()
    bad.loc[bad.index[0], "body_mass_g"] = 100_000  # a 100 kg penguin
    assert len(clean(bad)) == 2


def test_missing_columns_name_themselves(raw):
    with pytest.raises(DataError, match="island"):
        clean(raw.drop(columns=["island"]))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope.csv")


def test_too_few_rows_is_a_data_error(tmp_path, raw):
    path = tmp_path / "tiny.csv"
    raw.head(10).to_csv(path, index=False)
    with pytest.raises(DataError, match="usable rows"):
        load_dataset(path)
