"""How long the dashboard's aggregates (ai_service.service.stats) take on a large history: a database filled with
`--rows` predictions spread over 30 days (4 models, errors, labels, timings, job rows) and some jobs, then each
aggregate timed (best of `--repeat`) over the last day, the whole 30 days, and 30 days of one model, with the number
of rows each answer brought back from the database (the point: a few hundred, whatever the table holds).

    python bench/stats_aggregates.py --rows 1000000                        # SQLite in a temporary folder
    python bench/stats_aggregates.py --rows 1000000 --url postgresql+psycopg://root@127.0.0.1:5432/bench
    python bench/stats_aggregates.py --rows 1000000 --report bench/results/stats.md

--url names an empty database (it is migrated and filled); SQLite is used otherwise.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402

from ai_service.schemas.stats import StatsDriftQuery  # noqa: E402
from ai_service.service.stats import content, jobs, usage  # noqa: E402
from ai_service.storage.database import backend, connect, safe_url  # noqa: E402
from ai_service.storage.migrate import upgrade  # noqa: E402
from ai_service.storage.schema import Job, Prediction  # noqa: E402

MODELS = ("digits", "resnet18-demo", "digits-detect", "remove-bg")
LABELS = tuple(str(digit) for digit in range(10))
NAMES = ("a.png", "b.jpg", "c.webp", "", "d.tif")
DAYS = 30
CHUNK = 20_000
AGGREGATES = {
    "traffic": usage.traffic,
    "latency": usage.latency,
    "errors": usage.errors,
    "drift": content.drift,
    "inputs": content.inputs,
    "jobs": jobs.jobs,
}


class Store:
    """What the aggregates need of a History: its engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine


def rows(count: int, end: datetime, seed: int = 1) -> Any:
    """`count` history rows evenly over DAYS days before `end`, in chunks."""
    rng = random.Random(seed)
    step = DAYS * 86_400 / count
    chunk = []
    for index in range(count):
        failed = rng.random() < 0.03
        total = rng.lognormvariate(2.5, 0.6)
        chunk.append(
            {
                "id": f"{index:032x}",
                "created_at": end - timedelta(seconds=(count - index) * step),
                "request_id": f"r{index // 2}",
                "source": "job" if index % 10 == 0 else "api",
                "job_id": None,
                "item_index": 0,
                "model": MODELS[index % len(MODELS)],
                "version": "1",
                "task": "classification",
                "input_sha256": None,
                "filename": NAMES[index % len(NAMES)],
                "width": rng.choice((28, 64, 224, 640, 1920)),
                "height": rng.choice((28, 64, 224, 480, 1080)),
                "mode": rng.choice(("L", "RGB", "RGBA")),
                "status": "error" if failed else "ok",
                "error_code": "image_decode_error" if failed else None,
                "http_status": 400 if failed else 200,
                "error_message": None,
                "result": None,
                "top1_label": None if failed else rng.choice(LABELS),
                "top1_score": None if failed else rng.random(),
                "timing_ms": {"decode": 0.2, "preprocess": 0.3, "queue": 1.0, "forward": total - 2, "total": total},
                "total_ms": total,
                "batch_size": 4,
                "client": "ip:10.0.0.1",
                "input_stored": False,
                "output_sha256": None,
            }
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def fill(engine: Any, count: int, end: datetime) -> float:
    """Insert the rows and 2000 jobs; returns the seconds it took."""
    started = time.perf_counter()
    for chunk in rows(count, end):
        with engine.begin() as connection:
            connection.execute(insert(Prediction), chunk)
    job_rows = [
        {
            "id": f"{index:032x}",
            "created_at": end - timedelta(hours=index * DAYS * 24 / 2000),
            "status": "succeeded",
            "model": MODELS[index % len(MODELS)],
            "version": "1",
            "task": "classification",
            "options": {},
            "total": 50,
            "chunk_size": 10,
            "source": "api",
            "client": "",
            "executor": "local",
            "name": "files",
            "started_at": None,
            "finished_at": end - timedelta(hours=index * DAYS * 24 / 2000) + timedelta(minutes=3),
            "error_code": None,
            "error_message": None,
        }
        for index in range(2000)
    ]
    with engine.begin() as connection:
        connection.execute(insert(Job), job_rows)
    return time.perf_counter() - started


def timed(function: Any, store: Store, query: StatsDriftQuery, repeat: int) -> tuple[float, int]:
    """Best wall time of `repeat` runs, and the size of the answer."""
    best, answer = float("inf"), {}
    for _ in range(repeat):
        started = time.perf_counter()
        answer = function(store, query)
        best = min(best, time.perf_counter() - started)
    return best, answer_size(answer)


def answer_size(answer: dict[str, Any]) -> int:
    """Values in an answer: what the page and the API handle, against the table's rows."""
    if isinstance(answer, dict):
        return sum(answer_size(value) for value in answer.values())
    if isinstance(answer, list):
        return sum(answer_size(value) for value in answer) or 1
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default="")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory(prefix="stats-bench-")
    url = args.url or f"sqlite:///{Path(folder.name) / 'bench.db'}"
    engine = connect(url)
    upgrade(engine)
    end = datetime.now(UTC).replace(microsecond=0)
    with engine.connect() as connection:
        existing = connection.scalar(select(func.count()).select_from(Prediction))
    fill_s = fill(engine, args.rows, end) if not existing else 0.0
    if backend(engine) == "postgresql":  # the statistics autovacuum keeps on a live table, not yet there after a fill
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
    print(f"filled {args.rows:,} rows in {fill_s:.0f} s", flush=True)
    store = Store(engine)
    ranges = {
        "last day": StatsDriftQuery(since=end - timedelta(days=1), until=end),
        f"{DAYS} days": StatsDriftQuery(since=end - timedelta(days=DAYS), until=end),
        f"{DAYS} days, one model": StatsDriftQuery(since=end - timedelta(days=DAYS), until=end, model="digits"),
    }
    lines = [
        f"# Dashboard aggregates on {args.rows:,} history rows ({backend(engine)})",
        "",
        f"Generated by `bench/stats_aggregates.py --rows {args.rows}` on {end:%Y-%m-%d %H:%M} UTC. Machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other work while it ran); "
        f"database {safe_url(engine).split('@')[-1] if args.url else 'SQLite file (WAL)'}. {args.rows:,} predictions "
        f"over {DAYS} days (4 models), 2,000 jobs; filled in {fill_s:.0f} s. Each aggregate is the service call the "
        f"API and the page make (ai_service.service.stats), best of {args.repeat}; *values* counts the numbers in "
        "its answer (what leaves the database is of that order, never the rows).",
        "",
        "| range | aggregate | s | values |",
        "|---|---|---|---|",
    ]
    page = {name: 0.0 for name in ranges}
    for name, query in ranges.items():
        for aggregate, function in AGGREGATES.items():
            seconds, size = timed(function, store, query, args.repeat)
            page[name] += seconds
            lines.append(f"| {name} | {aggregate} | {seconds:.3f} | {size:,} |")
            print(lines[-1], flush=True)
    lines += ["", *(f"- **{name}**: the whole page's aggregates {seconds:.2f} s" for name, seconds in page.items())]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.report:
        args.report.write_text(text)
    engine.dispose()
    folder.cleanup()


if __name__ == "__main__":
    main()
