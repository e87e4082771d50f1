"""Request bodies the API tests send: real penguins from the data set."""

from __future__ import annotations

# One Adelie from the data set, in both spellings the API accepts.
SAMPLE = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181.0,
    "body_mass_g": 3750.0,
    "island_encoded": 0,
    "sex_encoded": 1,
}
SAMPLE_BY_NAME = {
    **{k: v for k, v in SAMPLE.items() if not k.endswith("_encoded")},
    "island": "torgersen",
    "sex": "MALE",
}
GENTOO = {
    "bill_length_mm": 46.1,
    "bill_depth_mm": 13.2,
    "flipper_length_mm": 211.0,
    "body_mass_g": 4500.0,
    "island": "Biscoe",
    "sex": "female",
}
CHINSTRAP = {
    "bill_length_mm": 46.5,
    "bill_depth_mm": 17.9,
    "flipper_length_mm": 192.0,
    "body_mass_g": 3500.0,
    "island": "Dream",
    "sex": "female",
}
