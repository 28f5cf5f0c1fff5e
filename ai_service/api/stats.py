"""GET /api/v1/stats/…: the dashboard's aggregates of the history and the jobs (ai_service.service.stats) as JSON.

Aggregates of everyone's traffic are read like the history itself: with an API key when the server has keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import jsonify
from pydantic import BaseModel

from ai_service.api import bp
from ai_service.api.history import query_args, require_reader
from ai_service.http.context import runtime
from ai_service.schemas import stats as st
from ai_service.service.stats import content, jobs, usage


def answer(function: Callable[[Any, Any], dict[str, Any]], query: type[st.StatsQuery], body: type[BaseModel]):
    """Read the query, aggregate, answer with `body`."""
    require_reader()
    found = function(runtime().history, query_args(query))
    return jsonify(body.model_validate(found).model_dump(mode="json"))


@bp.get("/stats/traffic")
def stats_traffic():
    """Images, requests and errors per time bucket and model."""
    return answer(usage.traffic, st.StatsQuery, st.StatsTraffic)


@bp.get("/stats/latency")
def stats_latency():
    """p50/p95/p99 of the recorded total per bucket, and per model over the range."""
    return answer(usage.latency, st.StatsQuery, st.StatsLatency)


@bp.get("/stats/errors")
def stats_errors():
    """The error rate per bucket and by error code."""
    return answer(usage.errors, st.StatsQuery, st.StatsErrors)


@bp.get("/stats/drift")
def stats_drift():
    """Top-1 labels and the score histogram per model, beside a baseline period."""
    return answer(content.drift, st.StatsDriftQuery, st.StatsDrift)


@bp.get("/stats/inputs")
def stats_inputs():
    """Input sizes, modes and formats."""
    return answer(content.inputs, st.StatsQuery, st.StatsInputs)


@bp.get("/stats/jobs")
def stats_jobs():
    """Jobs submitted and finished per bucket, and their images per second."""
    return answer(jobs.jobs, st.StatsQuery, st.StatsJobs)
