"""Property-based contract test: schemathesis drives every documented operation of the live WSGI app.

Valid and invalid requests generated from /api/v1/openapi.json must never produce a 5xx, an undocumented
status or content type, or a body that violates the documented schema. Bounded: 50 examples per operation.
"""

from __future__ import annotations

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ai_service import create_app

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


@schema.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_api_honours_its_openapi_document(case):
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if case.operation.path.endswith("{action}") else None
    case.call_and_validate(headers=headers, checks=CHECKS)
