"""The dashboard's numbers: aggregates of the prediction history and the jobs, computed by the database (GROUP BY on
time buckets, percentiles from latency histograms) so that only a few hundred values ever leave it, whatever the table's
size. `window` resolves a query's range into buckets (and holds what every aggregate shares); `usage` (traffic,
latency, errors), `content` (drift, inputs) and `jobs` hold one function per GET /api/v1/stats/… endpoint, which the
JSON API and the /dashboard page both call. The SQL is the same on SQLite, MariaDB and PostgreSQL
(ai_service.storage.portable spells the two functions they disagree on).
"""
