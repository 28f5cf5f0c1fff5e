"""How the service is used, per time bucket: traffic, latency percentiles, errors.

Every query filters with `where` (the range, the models) and groups in an outer SELECT over a subquery whose columns
are the derived values (bucket, histogram bin): the grouped expression is then a plain column on every backend.
Percentiles are nearest-rank (the smallest value with at least p% of the values at or below it) read from a latency
histogram the database computes: per group and log-spaced bin its count, sum, min and max (ranking every row with
window functions sorted the whole range: 25 s for a month of a million rows on SQLite). The answer lies in the
bin of the true value, between its observed min and max, so it is within 1/SUB_BINS (3.2 %) of the exact value.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal_column, select

from ai_service.schemas.stats import StatsQuery
from ai_service.service.history.recorder import History
from ai_service.service.stats.window import Window, engine_of, ratio, resolve, run, series, where
from ai_service.storage.portable import floor_int
from ai_service.storage.schema import Prediction

#: The percentiles of the latency answers.
PERCENTILES = (50, 95, 99)
#: Latency histogram: linear bins per power of two of milliseconds (each bin at most 1/32 of its lower edge wide),
#: over the octaves from 2**LOW_OCTAVE ms (about 1 µs) to 2**HIGH_OCTAVE ms (about 4.7 h); bin 0 holds any time
#: below, the last bin any time above (there the answer is still an observed value, but with no relative bound).
SUB_BINS = 32
LOW_OCTAVE, HIGH_OCTAVE = -10, 24
TOP_BIN = (HIGH_OCTAVE - LOW_OCTAVE) * SUB_BINS + 1


# ---- traffic -------------------------------------------------------------------------------------------------


def traffic(history: History | None, query: StatsQuery) -> dict[str, Any]:
    """Images, distinct requests and errors per bucket and model."""
    engine, window = engine_of(history), resolve(query)
    rows_of = (
        select(
            Prediction.model.label("model"),
            window.bucket(Prediction.created_at).label("bucket"),
            Prediction.request_id.label("request_id"),
            case((Prediction.status == "error", 1), else_=0).label("failed"),
        )
        .where(*where(window))
        .subquery()
    )
    statement = select(
        rows_of.c.model,
        rows_of.c.bucket,
        func.count(),
        func.count(func.distinct(rows_of.c.request_id)),
        func.sum(rows_of.c.failed),
    ).group_by(rows_of.c.model, rows_of.c.bucket)
    per_model: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {name: [0] * window.count for name in ("images", "requests", "errors")}
    )
    for model, bucket, images, requests, failed in run(engine, statement):
        if 0 <= bucket < window.count:
            values = per_model[model]
            values["images"][bucket], values["requests"][bucket] = images, requests
            values["errors"][bucket] = int(failed or 0)
    found = [{"model": model, **per_model[model]} for model in sorted(per_model)]
    return {
        "window": window.describe(),
        "buckets": window.starts(),
        "series": found,
        **{name: sum(sum(item[name]) for item in found) for name in ("images", "requests", "errors")},
    }


# ---- latency -------------------------------------------------------------------------------------------------


def latency_bin(ms: Any) -> ColumnElement[int]:
    """The histogram bin of a time in SQL, by comparisons with powers of two and one multiplication by a power of
    two: exact in binary floating point, so the same bin on every backend (LOG is missing from some SQLite builds
    and rounds differently elsewhere). A binary search finds the octave [2**e, 2**(e+1)); ms * 2**(5-e) is then
    in [32, 64)."""
    shift = SUB_BINS.bit_length() - 1

    def octaves(low: int, high: int) -> Any:
        if high - low == 1:
            return floor_int(ms * 2.0 ** (shift - low)) + ((low - LOW_OCTAVE) * SUB_BINS + 1 - SUB_BINS)
        middle = (low + high) // 2
        return case((ms < 2.0**middle, octaves(low, middle)), else_=octaves(middle, high))

    return case((ms < 2.0**LOW_OCTAVE, 0), (ms >= 2.0**HIGH_OCTAVE, TOP_BIN), else_=octaves(LOW_OCTAVE, HIGH_OCTAVE))


def histogram(engine: Any, window: Window, partition: Any) -> list[Any]:
    """(partition, bin, count, sum, min, max) of the recorded totals: per partition, at most SUB_BINS rows per
    power of two that its times span."""
    binned = (
        select(
            partition.label("part"),
            Prediction.total_ms.label("ms"),
            latency_bin(Prediction.total_ms).label("bin"),
        )
        .where(*where(window), Prediction.total_ms.is_not(None))
        .subquery()
    )
    columns = (binned.c.part, binned.c.bin)
    aggregates = (func.count(), func.sum(binned.c.ms), func.min(binned.c.ms), func.max(binned.c.ms))
    return run(engine, select(*columns, *aggregates).group_by(*columns))


def percentiles(rows: list[Any]) -> list[tuple[Any, int, float, float, float, float]]:
    """(partition, count, sum, p50, p95, p99) per partition, from its histogram: the bin holding each nearest rank,
    and in it the value interpolated by the rank between the bin's min and max (exact when it is the first or the
    last of its bin, e.g. when the bin holds one distinct value)."""
    bins: dict[Any, list[tuple[int, int, float, float]]] = defaultdict(list)
    sums: dict[Any, float] = defaultdict(float)
    for part, index, count, total, low, high in rows:
        bins[part].append((int(index), int(count), float(low), float(high)))
        sums[part] += float(total)
    found = []
    for part, histogram_of in bins.items():
        histogram_of.sort()
        n = sum(count for _, count, _, _ in histogram_of)
        values = []
        for p in PERCENTILES:
            rank, below = -(-p * n // 100), 0  # ceil(p * n / 100), in integers
            for _, count, low, high in histogram_of:
                if below + count >= rank:
                    inside = rank - below  # 1..count
                    values.append(low if count == 1 else low + (high - low) * (inside - 1) / (count - 1))
                    break
                below += count
        found.append((part, n, sums[part], *values))
    return found


def latency(history: History | None, query: StatsQuery) -> dict[str, Any]:
    """p50/p95/p99 of the recorded total per bucket (the models together), and per model over the whole range."""
    engine, window = engine_of(history), resolve(query)
    rows = percentiles(histogram(engine, window, window.bucket(Prediction.created_at)))
    models = [
        {"model": model, "count": n, "mean": ratio(total, n), "p50": p50, "p95": p95, "p99": p99}
        for model, n, total, p50, p95, p99 in percentiles(histogram(engine, window, Prediction.model))
    ]
    return {
        "window": window.describe(),
        "buckets": window.starts(),
        "count": series(rows, window.count),
        **{f"p{p}": nullable_series(rows, window.count, 3 + i) for i, p in enumerate(PERCENTILES)},
        "models": sorted(models, key=lambda item: item["model"]),
    }


def nullable_series(rows: list[Any], count: int, value: int) -> list[float | None]:
    """One float per bucket, null where the bucket has no row."""
    found: list[float | None] = [None] * count
    for row in rows:
        if 0 <= row[0] < count and row[value] is not None:
            found[row[0]] = float(row[value])
    return found


# ---- errors --------------------------------------------------------------------------------------------------


def errors(history: History | None, query: StatsQuery) -> dict[str, Any]:
    """The error rate per bucket, and each error code's count and share of all images."""
    engine, window = engine_of(history), resolve(query)
    rows_of = (
        select(
            window.bucket(Prediction.created_at).label("bucket"),
            case((Prediction.status == "error", 1), else_=0).label("failed"),
        )
        .where(*where(window))
        .subquery()
    )
    rows = run(engine, select(rows_of.c.bucket, func.count(), func.sum(rows_of.c.failed)).group_by(rows_of.c.bucket))
    images, failed = series(rows, window.count), [int(value or 0) for value in series(rows, window.count, value=2)]
    total = sum(images)
    code = func.coalesce(Prediction.error_code, literal_column("'unknown'"))
    by_code = run(
        engine,
        select(code.label("code"), func.max(Prediction.http_status), func.count())
        .where(*where(window), Prediction.status == "error")
        .group_by(code),
    )
    codes = [
        {"code": name, "http_status": status, "count": count, "rate": ratio(count, total) or 0.0}
        for name, status, count in sorted(by_code, key=lambda row: (-row[2], row[0]))
    ]
    return {
        "window": window.describe(),
        "buckets": window.starts(),
        "images": images,
        "errors": failed,
        "rate": [ratio(bad, all_) for bad, all_ in zip(failed, images)],
        "total": total,
        "codes": codes,
    }
