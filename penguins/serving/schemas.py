"""The API's request and response shapes, declared once with pydantic.

The same declarations validate requests (their errors become the ``details`` of a
422 answer) and describe the API in the OpenAPI document served at /openapi.json.
Bounds and codes come from :mod:`penguins.features`, the one place they live.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from itertools import repeat
from typing import Annotated, Literal
from uuid import UUID

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from penguins.features import (
    BOUNDS,
    CATEGORY_CODES,
    FEATURES,
    ISLAND_CODES,
    NUMERIC_FEATURES,
    SEX_CODES,
    SPECIES,
    canonical_name,
    code_of,
)

# Literal[SPECIES] spells out the three names; the order is the API's everywhere.
Species = Literal[SPECIES]  # type: ignore[valid-type]

# A 422 answer lists at most this many fields: enough to fix a batch, small to send.
MAX_ERROR_DETAILS = 100


def _measurement(name: str, what: str) -> object:
    """Return the type of one numeric feature: a finite number inside its bounds."""
    bounds = BOUNDS[name]
    return Annotated[
        float,
        Field(
            ge=bounds.low,
            le=bounds.high,
            description=f"{what} in {bounds.unit}, {bounds.low:g} to {bounds.high:g}",
        ),
    ]


def _code_checker(kind: str, codes: dict[str, int]):
    """Return a validator accepting only the known codes of one categorical feature."""
    expected = ", ".join(f"{code}={name}" for name, code in codes.items())

    def check(value: int) -> int:
        """Reject a code that names no category."""
        if value not in codes.values():
            raise PydanticCustomError(
                "unknown_code",
                "unknown {kind} code {value}; expected {expected}",
                {"kind": kind, "value": value, "expected": expected},
            )
        return value

    return check


def _name_pointer(kind: str, meaning: str):
    """Return a validator that answers a name sent as a code by pointing at the name field."""

    def check(value: object) -> object:
        """Refuse a string in a code field, naming the field that takes it."""
        if isinstance(value, str):
            raise PydanticCustomError(
                "name_in_code_field",
                "{kind}_encoded takes a code ({meaning}); to send the name, "
                "give it as {kind} instead",
                {"kind": kind, "meaning": meaning},
            )
        return value

    return check


def _name_checker(kind: str) -> object:
    """Return a validator turning a category name, in any case, into its canonical spelling."""
    feature = f"{kind}_encoded"
    expected = ", ".join(CATEGORY_CODES[feature])

    def check(value: str) -> str:
        """Return the canonical name, or reject an unknown one."""
        name = canonical_name(feature, value)
        if name is None:
            raise PydanticCustomError(
                "unknown_name",
                "unknown {kind} {value}; expected one of {expected} (any case)",
                # Quoted as JSON: escapes anything unprintable (lone surrogates, NULs).
                {"kind": kind, "value": json.dumps(value[:50]), "expected": expected},
            )
        return name

    return check


def _without_default(extra: dict):
    """Return a JSON Schema hook adding ``extra`` and dropping the ``null`` default.

    Leaving a field of a pair out is how a client picks the other one; ``null``
    itself is not accepted, so the schema must not advertise it.
    """

    def hook(schema: dict) -> None:
        """Edit the field's schema in place."""
        schema.pop("default", None)
        schema.update(extra)

    return hook


def _code_field(kind: str, codes: dict[str, int]) -> object:
    """Return the type of an encoded categorical feature; absent means the name is given.

    Not nullable: ``null`` is not a way to leave a field out, so the JSON Schema's
    one-of-each-pair rule says exactly what the validation does.
    """
    meaning = ", ".join(f"{code}={name}" for name, code in codes.items())
    return Annotated[
        StrictInt,
        BeforeValidator(_name_pointer(kind, meaning)),
        AfterValidator(_code_checker(kind, codes)),
        Field(
            description=f"{kind} code: {meaning}; give this or `{kind}`, not both",
            json_schema_extra=_without_default({"enum": sorted(codes.values())}),
        ),
    ]


def _name_field(kind: str, codes: dict[str, int]) -> object:
    """Return the type of a categorical feature given by name; absent means the code is."""
    return Annotated[
        StrictStr,
        AfterValidator(_name_checker(kind)),
        Field(
            description=f"{kind} name, any case: {', '.join(codes)}; "
            f"give this or `{kind}_encoded`, not both",
            json_schema_extra=_without_default({"examples": [next(iter(codes))]}),
        ),
    ]


SAMPLE_EXPECTED = (
    "expected a JSON object with one penguin's fields: bill_length_mm, bill_depth_mm, "
    "flipper_length_mm, body_mass_g, island_encoded or island, sex_encoded or sex"
)
BATCH_EXPECTED = (
    'expected a JSON object with "samples", a list of samples: {"samples": [{...}, ...]}'
)
PAIRS = (("island", "island_encoded"), ("sex", "sex_encoded"))
PAIRED_FIELDS = tuple(name for pair in PAIRS for name in pair)


def pair_problems(given: set[str]) -> list[PydanticCustomError]:
    """Return what is wrong with the island and sex pairs, given the fields a sample has.

    Each error's ``field`` names the field to fix.
    """
    problems = []
    for kind, code in PAIRS:
        if kind in given and code in given:
            problems.append(
                PydanticCustomError(
                    "pair_conflict",
                    "give {kind} or {kind}_encoded, not both",
                    {"kind": kind, "field": kind},
                )
            )
        elif kind not in given and code not in given:
            problems.append(
                PydanticCustomError(
                    "pair_missing",
                    "Field required: give {kind}_encoded or {kind}",
                    {"kind": kind, "field": code},
                )
            )
    return problems


class Sample(BaseModel):
    """One penguin's measurements: four numbers, and island and sex as codes or names."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # bools and numeric strings are not numbers
        allow_inf_nan=False,
        frozen=True,
        json_schema_extra={
            "allOf": [
                {"oneOf": [{"required": ["island_encoded"]}, {"required": ["island"]}]},
                {"oneOf": [{"required": ["sex_encoded"]}, {"required": ["sex"]}]},
            ],
            "examples": [
                {
                    "bill_length_mm": 39.1,
                    "bill_depth_mm": 18.7,
                    "flipper_length_mm": 181.0,
                    "body_mass_g": 3750.0,
                    "island_encoded": 0,
                    "sex_encoded": 1,
                }
            ],
        },
    )

    bill_length_mm: _measurement("bill_length_mm", "bill length")  # type: ignore[valid-type]
    bill_depth_mm: _measurement("bill_depth_mm", "bill depth")  # type: ignore[valid-type]
    flipper_length_mm: _measurement("flipper_length_mm", "flipper length")  # type: ignore[valid-type]
    body_mass_g: _measurement("body_mass_g", "body mass")  # type: ignore[valid-type]
    island_encoded: _code_field("island", ISLAND_CODES) = None  # type: ignore[valid-type]
    sex_encoded: _code_field("sex", SEX_CODES) = None  # type: ignore[valid-type]
    island: _name_field("island", ISLAND_CODES) = None  # type: ignore[valid-type]
    sex: _name_field("sex", SEX_CODES) = None  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: object) -> object:
        """Refuse anything but a JSON object, saying what one sample looks like."""
        if not isinstance(data, dict | Sample):
            raise PydanticCustomError("object_expected", SAMPLE_EXPECTED)
        return data

    @model_validator(mode="after")
    def _one_of_each_pair(self) -> Sample:
        """Require exactly one of island/island_encoded and one of sex/sex_encoded."""
        given = {name for name in PAIRED_FIELDS if getattr(self, name) is not None}
        problems = pair_problems(given)
        if problems:
            raise problems[0]
        return self

    def row(self) -> tuple[float | int, ...]:
        """Return the model's input row, in FEATURES order, with names turned into codes."""
        island = self.island_encoded if self.island is None else ISLAND_CODES[self.island]
        sex = self.sex_encoded if self.sex is None else SEX_CODES[self.sex]
        return (
            self.bill_length_mm,
            self.bill_depth_mm,
            self.flipper_length_mm,
            self.body_mass_g,
            island,
            sex,
        )


# ---- the happy path, without pydantic ---------------------------------------------
#
# Validating a 10,000-sample batch through Sample costs about half a second of Python
# callbacks. fast_rows() accepts only samples that Sample certainly accepts and gives
# the same rows; anything else (including every invalid sample) makes it return None,
# and the caller then validates through the models above, which produce the error
# details. So it never decides what is an error and what its message is.

_MEASUREMENTS = tuple((name, BOUNDS[name].low, BOUNDS[name].high) for name in NUMERIC_FEATURES)
_CODES = {
    "island": frozenset(ISLAND_CODES.values()),
    "sex": frozenset(SEX_CODES.values()),
}
_NUMBER_TYPES = frozenset((int, float))


def _fast_code(sample: dict, kind: str) -> int | None:
    """Return the code of one categorical pair of a sample, or None if not plainly valid."""
    code = sample.get(f"{kind}_encoded")
    if code is not None:
        # type() is exact: bools (an int subclass) are not codes under strict validation.
        return code if type(code) is int and code in _CODES[kind] else None
    name = sample.get(kind)
    if type(name) is str:
        return code_of(f"{kind}_encoded", name)  # as _name_checker reads it
    return None


def _measurement_column(samples: list[dict], name: str, low: float, high: float):
    """Return one measurement of every sample as floats, or None unless all plainly valid."""
    column = list(map(dict.get, samples, repeat(name)))
    kinds = set(map(type, column))  # exact types: no bools, no str, no None (missing)
    if not kinds <= _NUMBER_TYPES:
        return None
    if int in kinds:
        column = list(map(float, column))
    values = np.fromiter(column, dtype=float, count=len(column))
    # NaN fails both comparisons, infinities the bounds.
    return column if bool(((values >= low) & (values <= high)).all()) else None


def _code_column(samples: list[dict], kind: str) -> list[int] | None:
    """Return one pair's code of every sample, all given as codes or all as names; or None."""
    codes = list(map(dict.get, samples, repeat(f"{kind}_encoded")))
    kinds = set(map(type, codes))
    if kinds == {int}:
        return codes if set(codes) <= _CODES[kind] else None
    if kinds != {type(None)}:
        return None
    names = list(map(dict.get, samples, repeat(kind)))
    if set(map(type, names)) != {str}:
        return None
    table = {name: code_of(f"{kind}_encoded", name) for name in set(names)}
    if None in table.values():
        return None
    return list(map(table.__getitem__, names))


def _columnar_rows(samples: list) -> list[tuple[float | int, ...]] | None:
    """Return the rows of samples that are uniform and plainly valid, a column at a time.

    Each check runs over a whole column in C (map, set, numpy), not sample by sample;
    mixed samples (some pairs by code, some by name) are left to the row-wise path.
    """
    if set(map(type, samples)) != {dict} or set(map(len, samples)) != {6}:
        return None
    columns = []
    for name, low, high in _MEASUREMENTS:
        column = _measurement_column(samples, name, low, high)
        if column is None:
            return None
        columns.append(column)
    for kind in ("island", "sex"):
        codes = _code_column(samples, kind)
        if codes is None:
            return None
        columns.append(codes)
    # Six keys, the four measurements and one key of each pair present: nothing else is.
    return list(zip(*columns, strict=True))


def fast_rows(samples: object) -> list[tuple[float | int, ...]] | None:
    """Return the model rows of samples that Sample would accept, or None if any might fail.

    The rows equal ``[Sample.model_validate(s).row() for s in samples]``. Exactly six
    keys, all four measurements and a code or name of each pair means no unexpected
    field and no pair given twice; a key present with ``null`` falls back to the models.
    """
    if type(samples) is not list or not samples:
        return None
    if len(samples) > 1:
        rows = _columnar_rows(samples)
        if rows is not None:
            return rows
    (n1, lo1, hi1), (n2, lo2, hi2), (n3, lo3, hi3), (n4, lo4, hi4) = _MEASUREMENTS
    rows = []
    append = rows.append
    for sample in samples:
        if type(sample) is not dict or len(sample) != 6:
            return None
        try:
            a, b, c, d = sample[n1], sample[n2], sample[n3], sample[n4]
        except KeyError:
            return None
        # type() is exact: no bools, no str; NaN fails every comparison, inf the bounds.
        if not (
            (type(a) is float or type(a) is int)
            and (type(b) is float or type(b) is int)
            and (type(c) is float or type(c) is int)
            and (type(d) is float or type(d) is int)
            and lo1 <= a <= hi1
            and lo2 <= b <= hi2
            and lo3 <= c <= hi3
            and lo4 <= d <= hi4
        ):
            return None
        island, sex = _fast_code(sample, "island"), _fast_code(sample, "sex")
        if island is None or sex is None:
            return None
        append((float(a), float(b), float(c), float(d), island, sex))
    return rows


class BatchRequest(BaseModel):
    """Several samples, answered in order."""

    model_config = ConfigDict(extra="forbid", strict=True)

    samples: list[Sample] = Field(min_length=1, description="one or more samples")

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: object) -> object:
        """Refuse anything but a JSON object, saying what a batch looks like."""
        if not isinstance(data, dict | BatchRequest):
            raise PydanticCustomError("object_expected", BATCH_EXPECTED)
        return data


class FeedbackRequest(BaseModel):
    """The actual species of an earlier prediction."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prediction_id: UUID = Field(strict=False, description="`prediction_id` of a prediction")
    actual_species: Species = Field(description="the species the penguin really is")


class Probabilities(BaseModel):
    """The probability of each species; they sum to 1."""

    Adelie: float
    Chinstrap: float
    Gentoo: float


class Prediction(BaseModel):
    """One prediction."""

    predicted_species: Species
    confidence: float = Field(description="the largest probability")
    probabilities: Probabilities
    prediction_time: float = Field(description="seconds the model took (for a batch: all of it)")
    model_version: str = Field(description="registry version of the model that answered")
    prediction_id: UUID = Field(description="quote it in POST /feedback")


class BatchPrediction(BaseModel):
    """The predictions of a batch, one per sample, in the order sent."""

    predictions: list[Prediction]
    count: int
    prediction_time: float = Field(description="seconds the model took for the whole batch")
    model_version: str


class FeedbackResult(BaseModel):
    """Whether the prediction was right."""

    prediction_id: UUID
    correct: bool


class Health(BaseModel):
    """Whether this server can predict."""

    status: Literal["healthy", "unhealthy"]
    model_loaded: bool
    model_version: str | None
    reason: str | None = Field(
        default=None, description="why the server cannot predict, and what to do (503 only)"
    )


class Route(BaseModel):
    """One route of the API."""

    method: str = Field(examples=["POST"])
    path: str = Field(examples=["/predict"])
    summary: str


class ServiceInfo(BaseModel):
    """What this service is, the model it serves, and its routes."""

    service: str
    model_version: str | None = Field(description="the served version; null while none is")
    routes: list[Route]
    openapi: str = Field(description="where the OpenAPI document of every route is")


class ModelInfo(BaseModel):
    """What is being served: registry name and version, algorithm, test metrics."""

    name: str
    version: str
    alias: str | None
    run_id: str | None
    algorithm: str
    metrics: dict[str, float] = Field(description="the training run's metrics (test split, CV)")
    features: list[str] = Field(examples=[list(FEATURES)])
    classes: list[str] = Field(examples=[list(SPECIES)])
    loaded_at: datetime
    uri: str = Field(description="the model URI the server follows")


class ErrorDetail(BaseModel):
    """One field at fault."""

    field: str = Field(examples=["samples[3].bill_depth_mm"])
    message: str


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str
    details: list[ErrorDetail] | None = Field(
        default=None, description="present when fields are at fault"
    )


def field_path(loc: tuple[int | str, ...]) -> str:
    """Return a pydantic error location as a path: ``samples[3].bill_depth_mm``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def validation_details(exc: ValidationError, data: object = None) -> list[ErrorDetail]:
    """Turn a pydantic ValidationError into the fields at fault, at most MAX_ERROR_DETAILS.

    pydantic checks the island and sex pairs only once a sample's fields are valid; so
    that one answer lists everything to fix, the pairs of each raw sample in ``data``
    whose fields failed are checked here too.
    """
    details: dict[str, str] = {}
    samples_at_fault: set[tuple] = set()
    for error in exc.errors(include_url=False, include_input=False):
        if len(details) >= MAX_ERROR_DETAILS:
            break
        loc = tuple(error["loc"])
        extra = (error.get("ctx") or {}).get("field")
        if extra:  # a rule about a pair of fields names the field to fix
            loc += (extra,)
        samples_at_fault.add(loc[:2] if loc[:1] == ("samples",) else ())
        details.setdefault(field_path(loc), error["msg"])
    for loc, sample in _raw_samples(data):
        if loc in samples_at_fault and isinstance(sample, dict):
            for problem in pair_problems(set(sample) & set(PAIRED_FIELDS)):
                details.setdefault(field_path((*loc, problem.context["field"])), problem.message())
    ordered = sorted(details.items(), key=_sample_order)[:MAX_ERROR_DETAILS]
    return [ErrorDetail(field=path, message=message) for path, message in ordered]


def _raw_samples(data: object) -> list[tuple[tuple, object]]:
    """Return the samples of a raw request body with their locations: one, or a batch's."""
    if isinstance(data, dict) and isinstance(data.get("samples"), list):
        return [(("samples", i), s) for i, s in enumerate(data["samples"])]
    return [((), data)]


def _sample_order(detail: tuple[str, str]) -> int:
    """Return the index of the batch sample a (path, message) is about (-1: the body itself)."""
    match = re.match(r"samples\[(\d+)\]", detail[0])
    return int(match[1]) if match else -1
