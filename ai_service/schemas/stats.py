"""GET /api/v1/stats/… as pydantic models: the query every aggregate takes and the bodies they answer with.

The dashboard page renders the same dicts (ai_service.service.stats), so the page and the JSON agree. Series are
column-oriented: `buckets` holds each time bucket's start, and every list of a series has one value per bucket.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import Field, field_validator

from ai_service.model_refs import MAX_PART_LENGTH, PART
from ai_service.schemas import NUMBER, ResponseSchema, Schema

#: Bucket widths a client may ask for, in seconds; `auto` picks the smallest with at most AUTO_BUCKETS buckets.
BUCKET_SECONDS: Final = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21_600, "1d": 86_400, "7d": 604_800}
Bucket = Literal["auto", "1m", "5m", "15m", "1h", "6h", "1d", "7d"]
#: Models one query may name, and how: model names (no version) separated by commas.
MAX_MODELS: Final = 50
MODELS_PATTERN: Final = rf"^{PART}(,{PART})*$"


class StatsQuery(Schema):
    """Query parameters of every GET /api/v1/stats/… : the time range, the models, the bucket width."""

    since: datetime | None = Field(
        None, description="Start of the range (ISO 8601; UTC when no offset is given). Default: `until` less 24 h."
    )
    until: datetime | None = Field(None, description="End of the range, exclusive. Default: now.")
    model: str | None = Field(
        None,
        pattern=MODELS_PATTERN,
        max_length=(MAX_PART_LENGTH + 1) * MAX_MODELS,
        description="Only these models: a name, or names separated by commas (`digits,negative`). Default: all.",
    )
    bucket: Bucket = Field("auto", description="Width of a time bucket; `auto`: at most 100 buckets in the range.")

    @field_validator("since", "until", "baseline_since", "baseline_until", mode="before", check_fields=False)
    @classmethod
    def iso_8601_only(cls, value: Any) -> Any:
        """pydantic reads a number as a Unix time; the documented contract (format date-time) is ISO 8601 only."""
        if isinstance(value, int | float) or (isinstance(value, str) and NUMBER.fullmatch(value.strip())):
            raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
        return value


class StatsDriftQuery(StatsQuery):
    """GET /api/v1/stats/drift: the range is compared with a baseline, by default the same length just before it."""

    baseline_since: datetime | None = Field(None, description="Start of the baseline. Default: `since` less the range.")
    baseline_until: datetime | None = Field(None, description="End of the baseline, exclusive. Default: `since`.")
    top: int = Field(10, ge=1, le=50, description="Labels listed per model; the rest are summed as `(other)`.")


class StatsWindow(ResponseSchema):
    """What was aggregated: the range as resolved (defaults filled in), the bucket width, the model filter."""

    since: datetime
    until: datetime
    bucket_s: int = Field(ge=1, description="Width of a time bucket in seconds.")
    models: list[str] = Field(description="The models asked for; empty: every model.")


class TrafficSeries(ResponseSchema):
    """One model's traffic, one value per bucket."""

    model: str
    images: list[int] = Field(description="Images predicted (history rows).")
    requests: list[int] = Field(description="Distinct requests (a batch or a job chunk is one request).")
    errors: list[int] = Field(description="Images that ended in an error.")


class StatsTraffic(ResponseSchema):
    """GET /api/v1/stats/traffic: requests and images over time, per model."""

    window: StatsWindow
    buckets: list[datetime] = Field(description="The start of each time bucket (UTC).")
    series: list[TrafficSeries]
    images: int = Field(ge=0, description="Images in the whole range.")
    requests: int = Field(ge=0, description="Sum of the buckets' distinct requests.")
    errors: int = Field(ge=0)


class LatencySummary(ResponseSchema):
    """One model's latency over the whole range (total ms per image, as recorded)."""

    model: str
    count: int = Field(ge=0, description="Images with a recorded time.")
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class StatsLatency(ResponseSchema):
    """GET /api/v1/stats/latency: nearest-rank percentiles of total ms, over time (models together) and per model.

    The database returns a histogram (32 bins per power of two of milliseconds, each with its count, min and max),
    never the rows: a percentile is the value interpolated by rank between the min and max of the bin holding the
    nearest rank, so it is within 1/32 (3.2 %) of the exact nearest-rank value, and exact when that is the first or
    last time in its bin. Times under 2**-10 ms or from 2**24 ms (4.7 h) share one bin each below and above."""

    window: StatsWindow
    buckets: list[datetime]
    count: list[int] = Field(description="Images with a recorded time, per bucket.")
    p50: list[float | None] = Field(description="null where a bucket has no image; within 3.2 % of the exact value.")
    p95: list[float | None]
    p99: list[float | None]
    models: list[LatencySummary]


class ErrorCount(ResponseSchema):
    """How often one error code answered, over the range."""

    code: str = Field(description="The error table's code (`unknown` when none was recorded).")
    http_status: int
    count: int = Field(ge=1)
    rate: float = Field(ge=0, le=1, description="Share of all images in the range.")


class StatsErrors(ResponseSchema):
    """GET /api/v1/stats/errors: the error rate over time and by code."""

    window: StatsWindow
    buckets: list[datetime]
    images: list[int]
    errors: list[int]
    rate: list[float | None] = Field(description="errors / images per bucket; null where a bucket has no image.")
    total: int = Field(ge=0, description="Images in the range.")
    codes: list[ErrorCount] = Field(description="Most frequent first.")


class LabelCount(ResponseSchema):
    """A top-1 label's count and share in the range and in the baseline."""

    label: str
    count: int = Field(ge=0)
    share: float = Field(ge=0, le=1)
    baseline_count: int = Field(ge=0)
    baseline_share: float = Field(ge=0, le=1)


class ScoreHistogram(ResponseSchema):
    """Top-1 scores in ten bins of 0.1 (a score below 0 counts in the first, 1 and above in the last)."""

    edges: list[float] = Field(description="The 11 bin edges, 0.0 to 1.0.")
    counts: list[int]
    baseline_counts: list[int]


class ModelDrift(ResponseSchema):
    """One model's top-1 labels and scores, in the range and in the baseline."""

    model: str
    count: int = Field(ge=0, description="Successful images with a top-1 score in the range.")
    baseline_count: int = Field(ge=0)
    mean_score: float | None = None
    baseline_mean_score: float | None = None
    labels: list[LabelCount] = Field(description="Most frequent in the range first; `(other)` last.")
    scores: ScoreHistogram


class Period(ResponseSchema):
    """A time range [since, until)."""

    since: datetime
    until: datetime


class StatsDrift(ResponseSchema):
    """GET /api/v1/stats/drift: label distribution and score histogram per model, beside a baseline period."""

    window: StatsWindow
    baseline: Period
    models: list[ModelDrift]


class NamedCount(ResponseSchema):
    """A category and how many images fell in it."""

    name: str
    count: int = Field(ge=0)


class StatsInputs(ResponseSchema):
    """GET /api/v1/stats/inputs: what clients send."""

    window: StatsWindow
    total: int = Field(ge=0)
    sizes: list[NamedCount] = Field(description="By the longer side in pixels (`unknown`: never decoded).")
    modes: list[NamedCount] = Field(description="By decoded PIL mode (L, RGB, RGBA, ...).")
    formats: list[NamedCount] = Field(description="By the uploaded file name's extension (`unnamed`: no name).")


class StatsJobs(ResponseSchema):
    """GET /api/v1/stats/jobs: bulk jobs over time and how fast their images went."""

    window: StatsWindow
    buckets: list[datetime]
    created: list[int] = Field(description="Jobs submitted per bucket.")
    finished: dict[str, list[int]] = Field(description="Jobs that ended per bucket, by final state.")
    images: list[int] = Field(description="Job images with a result per bucket.")
    images_per_s: list[float] = Field(description="images / bucket width.")
    states: dict[str, int] = Field(description="Jobs submitted in the range, by their state now.")
