"""Property-based contract test: schemathesis drives every documented operation of the live WSGI app.

Valid and invalid requests generated from /api/v1/openapi.json must never produce a 5xx, an undocumented
status or content type, or a body that violates the documented schema. Bounded: 50 examples per operation.
The history endpoints run against a few recorded predictions (DELETE with the admin token), the jobs endpoints
against a finished job under the id the document's example names.
"""

from __future__ import annotations

import base64
import io
import tempfile
import time

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import insert, select, update

from ai_service import create_app
from ai_service.http.openapi import PATH_PARAMETERS, SAMPLE_PNG_BASE64
from ai_service.storage.schema import Job, JobChunk, JobInput, Prediction

ADMIN_TOKEN = "schemathesis-admin-token"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


HOME = tempfile.TemporaryDirectory(prefix="ai-service-schemathesis-")  # removed when the session ends
APP = create_app(
    {
        "TESTING": True,
        "home": HOME.name,
        "log_level": "WARNING",
        "log_to_file": False,
        "admin_token": ADMIN_TOKEN,
        "max_files": 4,
    }
)  # admin token: lifecycle endpoints can succeed too
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", APP)
ADMIN_PATHS = ("/api/v1/models/{ref}/{action}", "/api/v1/history/{id}")


def record_some_history() -> None:
    """A few rows (one with the id the document's example names) so the history endpoints answer with content."""
    client = APP.test_client()
    for name in ("a.png", "b.png"):
        client.post("/api/v1/predict", data={"file": (io.BytesIO(SAMPLE_PNG), name)})
    history = APP.extensions["ai_service"].history
    history.writer.flush(5)
    with history.engine.begin() as connection:
        newest = connection.execute(select(Prediction).order_by(Prediction.created_at.desc())).mappings().first()
        connection.execute(insert(Prediction), [{**newest, "id": PATH_PARAMETERS["id"]["example"]}])


def finish_a_job() -> None:
    """A finished job of two images, renamed to the example id, so that its status, results and outputs answer 200."""
    client = APP.test_client()
    files = [(io.BytesIO(SAMPLE_PNG), "a/one.png"), (io.BytesIO(SAMPLE_PNG), "a/two.png")]
    job_id = client.post("/api/v1/jobs", data={"file": files}).get_json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/api/v1/jobs/{job_id}").get_json()["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the sample job did not finish"
        time.sleep(0.05)
    example = PATH_PARAMETERS["job_id"]["example"]
    with APP.extensions["ai_service"].jobs.engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id).values(id=example))
        for table in (JobInput, JobChunk, Prediction):
            connection.execute(update(table).where(table.job_id == job_id).values(job_id=example))


SAMPLE_PNG = base64.b64decode(SAMPLE_PNG_BASE64)
record_some_history()
finish_a_job()


@schema.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_api_honours_its_openapi_document(case):
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if case.operation.path in ADMIN_PATHS else None
    case.call_and_validate(headers=headers, checks=CHECKS)
