"""The dashboard's aggregates (ai_service.service.stats) as charts: each chart is a table of numbers, rendered as
HTML for screen readers and for browsers without JavaScript, which static/dashboard.js draws with Chart.js."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Cell:
    """One number: the value the chart draws (None: no data) and its text in the table."""

    value: float | None
    text: str


@dataclass
class Row:
    """One x position: its label (a time bucket carries its ISO time for the page's script) and one cell per series."""

    label: str
    cells: list[Cell]
    time: str | None = None


@dataclass
class Chart:
    """A chart and its table: what it shows, how it is drawn, the series (columns) and the rows."""

    id: str
    title: str
    #: bar or line.
    kind: str
    #: The axis and column that labels the rows.
    x_label: str
    series: list[str]
    rows: list[Row] = field(default_factory=list)
    #: The y values' unit for the axis: "", "ms", "%", "/s".
    unit: str = ""
    stacked: bool = False
    #: Bars along the y axis (long category names read better).
    horizontal: bool = False
    #: How many of the series (the first ones) the chart draws; the others are numbers for the table only.
    drawn: int | None = None

    @property
    def empty(self) -> bool:
        return not any(cell.value for row in self.rows for cell in row.cells)


def count_cell(value: int | float | None) -> Cell:
    return Cell(value, "–" if value is None else f"{value:,.0f}")


def ms_cell(value: float | None) -> Cell:
    return Cell(None if value is None else round(value, 3), "–" if value is None else f"{value:,.1f} ms")


def percent_cell(share: float | None) -> Cell:
    """A share (0-1) as a percentage."""
    return Cell(None if share is None else round(share * 100, 3), "–" if share is None else f"{share * 100:.1f}%")


def rate_cell(value: float) -> Cell:
    return Cell(round(value, 4), f"{value:,.2f}/s")


def time_rows(buckets: list[datetime], columns: list[list[Cell]]) -> list[Row]:
    """One row per time bucket, labelled in UTC (the page's script shows local times)."""
    return [
        Row(moment.strftime("%Y-%m-%d %H:%M UTC"), [column[index] for column in columns], moment.isoformat())
        for index, moment in enumerate(buckets)
    ]


def traffic_chart(traffic: dict[str, Any]) -> Chart:
    """Images per bucket, stacked by model, with the bucket's requests in the table."""
    models = [item["model"] for item in traffic["series"]]
    columns = [[count_cell(value) for value in item["images"]] for item in traffic["series"]]
    requests = [sum(values) for values in zip(*(item["requests"] for item in traffic["series"]))]
    chart = Chart("traffic", "Images per time bucket, by model", "bar", "Time", models, stacked=True)
    chart.drawn = len(models)
    chart.rows = time_rows(traffic["buckets"], columns)
    if requests:
        chart.series.append("Requests (all models)")
        for row, value in zip(chart.rows, requests):
            row.cells.append(count_cell(value))
    return chart


def latency_chart(latency: dict[str, Any]) -> Chart:
    """p50, p95 and p99 of the total time per bucket."""
    chart = Chart("latency", "Latency percentiles per time bucket", "line", "Time", ["p50", "p95", "p99"], unit="ms")
    columns = [[ms_cell(value) for value in latency[name]] for name in ("p50", "p95", "p99")]
    chart.rows = time_rows(latency["buckets"], columns)
    return chart


def error_rate_chart(errors: dict[str, Any]) -> Chart:
    chart = Chart("error-rate", "Error rate per time bucket", "line", "Time", ["Error rate", "Errors"], unit="%")
    chart.drawn = 1
    chart.rows = time_rows(
        errors["buckets"], [[percent_cell(rate) for rate in errors["rate"]], [count_cell(n) for n in errors["errors"]]]
    )
    return chart


def error_codes_chart(errors: dict[str, Any]) -> Chart:
    chart = Chart("error-codes", "Errors by code (share of all images)", "bar", "Code", ["Share", "Images"], unit="%")
    chart.horizontal, chart.drawn = True, 1
    chart.rows = [
        Row(f"{item['code']} ({item['http_status']})", [percent_cell(item["rate"]), count_cell(item["count"])])
        for item in errors["codes"]
    ]
    return chart


def label_chart(model: dict[str, Any], index: int) -> Chart:
    """The share of each top-1 label, now and in the baseline, side by side."""
    chart = Chart(f"labels-{index}", f"{model['model']}: top-1 labels", "bar", "Label", ["Range", "Baseline"], unit="%")
    chart.horizontal = True
    chart.rows = [
        Row(item["label"], [percent_cell(item["share"]), percent_cell(item["baseline_share"])])
        for item in model["labels"]
    ]
    return chart


def score_chart(model: dict[str, Any], index: int) -> Chart:
    """The histogram of top-1 scores as shares of each period's images, so periods of different traffic compare."""
    scores = model["scores"]
    edges = scores["edges"]
    chart = Chart(f"scores-{index}", f"{model['model']}: top-1 scores", "bar", "Score", ["Range", "Baseline"], unit="%")
    total, base_total = sum(scores["counts"]), sum(scores["baseline_counts"])
    chart.rows = [
        Row(
            f"{edges[i]:.1f}–{edges[i + 1]:.1f}",
            [
                percent_cell(count / total if total else None),
                percent_cell(base / base_total if base_total else None),
            ],
        )
        for i, (count, base) in enumerate(zip(scores["counts"], scores["baseline_counts"]))
    ]
    return chart


def category_chart(chart_id: str, title: str, x_label: str, items: list[dict[str, Any]]) -> Chart:
    """Images per category (input sizes, modes, formats)."""
    chart = Chart(chart_id, title, "bar", x_label, ["Images"])
    chart.rows = [Row(item["name"], [count_cell(item["count"])]) for item in items]
    return chart


def jobs_chart(jobs: dict[str, Any]) -> Chart:
    """Jobs submitted and finished (by state) per bucket."""
    states = list(jobs["finished"])
    chart = Chart("jobs", "Jobs submitted and finished per time bucket", "bar", "Time", ["Submitted", *states])
    columns = [[count_cell(n) for n in jobs["created"]]]
    columns += [[count_cell(n) for n in jobs["finished"][state]] for state in states]
    chart.rows = time_rows(jobs["buckets"], columns)
    return chart


def throughput_chart(jobs: dict[str, Any]) -> Chart:
    chart = Chart("throughput", "Job images per second", "line", "Time", ["Images/s"], unit="/s")
    chart.rows = time_rows(jobs["buckets"], [[rate_cell(value) for value in jobs["images_per_s"]]])
    return chart
