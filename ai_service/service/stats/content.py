"""What the models see and say: top-1 labels and scores beside a baseline period (drift), and the inputs' sizes,
modes and formats. Grouped like service/stats/usage.py: derived columns in a subquery, GROUP BY over them."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select

from ai_service.schemas.stats import StatsDriftQuery, StatsQuery
from ai_service.service.history.recorder import History
from ai_service.service.stats.window import baseline, engine_of, ratio, resolve, run, where
from ai_service.storage.portable import floor_int
from ai_service.storage.schema import Prediction

#: Top-1 score bins: ten of 0.1.
SCORE_BINS = 10
#: Input size classes by the longer side (px): (upper bound, name); anything larger is LARGEST.
SIZE_CLASSES = (
    (64, "≤64"),
    (128, "65–128"),
    (256, "129–256"),
    (512, "257–512"),
    (1024, "513–1024"),
    (2048, "1025–2048"),
)
LARGEST = ">2048"
#: File name extensions by format: the bytes' format is not stored, the uploaded name mostly says it.
EXTENSIONS = {
    "png": ("png",),
    "jpeg": ("jpg", "jpeg", "jpe", "jfif"),
    "webp": ("webp",),
    "gif": ("gif",),
    "bmp": ("bmp", "dib"),
    "tiff": ("tif", "tiff"),
    "ico": ("ico",),
    "psd": ("psd",),
    "svg": ("svg",),
}
OTHER = "(other)"


def drift(history: History | None, query: StatsDriftQuery) -> dict[str, Any]:
    """Per model: the top-1 label counts and the histogram of top-1 scores, in the range and in the baseline."""
    engine, window = engine_of(history), resolve(query)
    base_since, base_until = baseline(query, window)
    in_range = and_(*where(window))
    in_baseline = and_(*where(window, base_since, base_until))
    score = Prediction.top1_score
    bins = case((score < 0, 0), (score >= 1, SCORE_BINS - 1), else_=floor_int(score * SCORE_BINS))
    rows_of = (
        select(
            Prediction.model.label("model"),
            case((in_range, 1), else_=0).label("current"),
            Prediction.top1_label.label("label"),
            score.label("score"),
            bins.label("bin"),
        )
        .where(or_(in_range, in_baseline), Prediction.status == "ok", score.is_not(None))
        .subquery()
    )
    by_label = run(
        engine,
        select(rows_of.c.model, rows_of.c.current, rows_of.c.label, func.count()).group_by(
            rows_of.c.model, rows_of.c.current, rows_of.c.label
        ),
    )
    by_bin = run(
        engine,
        select(rows_of.c.model, rows_of.c.current, rows_of.c.bin, func.count(), func.sum(rows_of.c.score)).group_by(
            rows_of.c.model, rows_of.c.current, rows_of.c.bin
        ),
    )
    labels: dict[str, list[Counter[str]]] = defaultdict(lambda: [Counter(), Counter()])
    for model, current, label, count in by_label:
        labels[model][int(current)][label if label is not None else "(none)"] += count
    histograms: dict[str, list[list[int]]] = defaultdict(lambda: [[0] * SCORE_BINS, [0] * SCORE_BINS])
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for model, current, index, count, total in by_bin:
        histograms[model][int(current)][int(index)] += count
        sums[model][int(current)] += float(total or 0)
    models = []
    for model in sorted(set(labels) | set(histograms)):
        (base_labels, labels_now), (base_bins, bins_now) = labels[model], histograms[model]
        count, base_count = sum(bins_now), sum(base_bins)
        models.append(
            {
                "model": model,
                "count": count,
                "baseline_count": base_count,
                "mean_score": ratio(sums[model][1], count),
                "baseline_mean_score": ratio(sums[model][0], base_count),
                "labels": top_labels(labels_now, base_labels, query.top),
                "scores": {
                    "edges": [round(i / SCORE_BINS, 10) for i in range(SCORE_BINS + 1)],
                    "counts": bins_now,
                    "baseline_counts": base_bins,
                },
            }
        )
    return {"window": window.describe(), "baseline": {"since": base_since, "until": base_until}, "models": models}


def top_labels(now: Counter[str], before: Counter[str], top: int) -> list[dict[str, Any]]:
    """The `top` most frequent labels of the range (then of the baseline), the others summed as (other)."""
    total, base_total = sum(now.values()), sum(before.values())
    ranked = sorted(set(now) | set(before), key=lambda label: (-now[label], -before[label], label))
    shown, rest = ranked[:top], ranked[top:]
    rows = [(label, now[label], before[label]) for label in shown]
    if rest:
        rows.append((OTHER, sum(now[label] for label in rest), sum(before[label] for label in rest)))
    return [
        {
            "label": label,
            "count": count,
            "share": ratio(count, total) or 0.0,
            "baseline_count": base_count,
            "baseline_share": ratio(base_count, base_total) or 0.0,
        }
        for label, count, base_count in rows
    ]


def inputs(history: History | None, query: StatsQuery) -> dict[str, Any]:
    """Images by size class of their longer side, by decoded mode, by the extension of their file name."""
    engine, window = engine_of(history), resolve(query)
    width, height = Prediction.width, Prediction.height
    longer = case((width >= height, width), else_=height)
    size = case(
        (or_(width.is_(None), height.is_(None)), literal("unknown")),
        *((longer <= bound, literal(name)) for bound, name in SIZE_CLASSES),
        else_=literal(LARGEST),
    )
    name = func.lower(Prediction.filename)
    fmt = case(
        (Prediction.filename == "", literal("unnamed")),
        *((or_(*(name.like(f"%.{ext}") for ext in exts)), literal(kind)) for kind, exts in EXTENSIONS.items()),
        else_=literal("other"),
    )
    mode = func.coalesce(Prediction.mode, literal("unknown"))
    rows_of = select(size.label("size"), fmt.label("format"), mode.label("mode")).where(*where(window)).subquery()
    columns = (rows_of.c.size, rows_of.c.format, rows_of.c.mode)
    counts: dict[str, Counter[str]] = {"size": Counter(), "format": Counter(), "mode": Counter()}
    for size_name, format_name, mode_name, count in run(engine, select(*columns, func.count()).group_by(*columns)):
        counts["size"][size_name] += count
        counts["format"][format_name] += count
        counts["mode"][mode_name] += count
    found = {
        key: [{"name": name, "count": count} for name, count in counter.items()] for key, counter in counts.items()
    }
    order = {name: index for index, (_, name) in enumerate(SIZE_CLASSES)} | {LARGEST: len(SIZE_CLASSES)}
    return {
        "window": window.describe(),
        "total": sum(item["count"] for item in found["size"]),
        "sizes": sorted(found["size"], key=lambda item: order.get(item["name"], len(order))),
        "modes": sorted(found["mode"], key=lambda item: (-item["count"], item["name"])),
        "formats": sorted(found["format"], key=lambda item: (-item["count"], item["name"])),
    }
