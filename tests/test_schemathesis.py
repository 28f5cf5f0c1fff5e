"""Property-based contract test: schemathesis drives every documented operation, with every check it has.

Valid and invalid requests generated from /api/v1/openapi.json (examples, coverage and fuzzing phases: the coverage
phase is what sends `null` and empty values to multipart enums) must never produce a 5xx, an undocumented status,
content type or header, a body that violates the documented schema, a schema-violating request accepted (ST201) or a
schema-valid one refused (ST202; the refusals a schema cannot express are allowed per operation in CONFIG).
Twice: in process through WSGI (the Python API with all checks), and as `schemathesis run --checks all` against a
live server. The registry holds a plugin that failed to import and a model versioned `1.0+local`; the history
endpoints run against a few recorded predictions (DELETE with the admin token), the jobs endpoints against a
finished job under the id the document's example names.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from sqlalchemy import insert, select, update

from ai_service import create_app
from ai_service.http.openapi import PATH_PARAMETERS, SAMPLE_PNG_BASE64
from ai_service.storage.schema import Job, JobChunk, JobInput, Prediction
from tests.live_server import serve

ADMIN_TOKEN = "schemathesis-admin-token"
load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())  # the Python API's `--checks all`
CLI_SECONDS = 480


#: What positive_data_acceptance accepts by default; the allowances below add to it.
ACCEPTED = ("2xx", "3xx", "401", "403", "404", "409", "429", "5xx")


def allow(operation_id: str, *statuses: int, why: str) -> str:
    """One operation's ST202 allowance: refusals of schema-valid requests that no JSON schema can express."""
    listed = ", ".join(f'"{status}"' for status in (*ACCEPTED, *map(str, statuses)))
    return (
        f'\n# {why}\n[[operations]]\ninclude-operation-id = "{operation_id}"\n'
        f"checks.positive_data_acceptance.expected-statuses = [{listed}]\n"
    )


#: Shared by both runs: 100 examples per operation (enough for the fuzzing phase to reach the optional multipart
#: fields together), the coverage phase on, and the allowances below.
CONFIG = (
    textwrap.dedent(
        """
        suppress-health-check = ["all"]

        [generation]
        max-examples = 100
        deterministic = true
        database = "none"

        [phases.coverage]
        enabled = true

        # 413 refuses a request too: a body over the size limit is refused before its fields are read
        [checks.negative_data_rejection]
        expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
        """
    )
    + allow(
        "predict",
        400,
        413,
        415,
        422,
        why="an empty file; more files than max_files (a setting); bytes that are no image; image and images both "
        "or neither; return=image for a classification model",
    )
    + allow(
        "predictJson",
        400,
        413,
        415,
        422,
        why="more images than max_files (a setting); bytes that are no image; image and images both or neither; "
        "return=image for a classification model",
    )
    + allow("predictImage", 400, 415, 422, why="an empty file; bytes that are no image; a model without image output")
    + allow("convert", 400, 415, 422, why="an empty file; bytes that are no image; `operations` that is no list")
    + allow("psdLayers", 400, 415, 422, why="an empty file; bytes that are no PSD; a `layer` the file does not have")
    + allow(
        "createJob",
        400,
        413,
        415,
        422,
        why="an archive that is no archive; more files than the limits; filenames that do not match the images",
    )
    + allow(
        "createJobJson",
        400,
        413,
        422,
        why="more images than the limits; filenames that do not match the images",
    )
    + allow("listHistory", 422, why="a cursor this server did not issue")
    + "".join(
        allow(operation, 422, why="`since` not before `until` (or the baseline's); more than 1000 buckets of `bucket`")
        for operation in ("getStatsTraffic", "getStatsLatency", "getStatsErrors", "getStatsDrift")
        + ("getStatsInputs", "getStatsJobs")
    )
    + allow(
        "inspectMesh", 400, 413, 415, 422, why="an empty file; bytes that are no 3D model, or a damaged or unsafe one"
    )
    + allow(
        "renderMesh",
        400,
        413,
        415,
        422,
        why="an empty file; bytes that are no 3D model; views or size over the server's AI_SERVICE_MESH_MAX_* "
        "settings; response=image with several views",
    )
    + allow(
        "convertMesh", 400, 413, 415, 422, why="an empty file; bytes that are no 3D model, or a damaged or unsafe one"
    )
)


def plugin_home() -> str:
    """A home whose models/ holds a plugin that fails to import and one whose version is `1.0+local`."""
    folder = Path(HOME.name) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.py").write_text("raise RuntimeError('this plugin does not import')\n")
    (folder / "plus.py").write_text(PLUS_PLUGIN)
    return HOME.name


PLUS_PLUGIN = textwrap.dedent(
    """
    import torch
    from ai_service.models.base import ImageModel, ModelInfo, top_k_predictions


    class Plus(ImageModel):
        info = ModelInfo(name="plus", version="1.0+local", input_size=(4, 4), labels=("low", "high"))

        def load(self, device):
            self.network = torch.nn.Identity()
            self.device = device

        def preprocess(self, images, options):
            return torch.zeros(len(images), 2)

        def postprocess(self, outputs, items, options):
            return top_k_predictions(outputs, self.info.labels, options.top_k)
    """
)


HOME = tempfile.TemporaryDirectory(prefix="ai-service-schemathesis-")  # removed when the session ends
APP = create_app(
    {
        "TESTING": True,
        "home": plugin_home(),
        "log_level": "WARNING",
        "log_to_file": False,
        "admin_token": ADMIN_TOKEN,
        "max_files": 4,
    }
)  # admin token: lifecycle endpoints can succeed too
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", APP, config=SchemathesisConfig.from_str(CONFIG))
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


def test_the_registry_holds_a_failed_plugin_and_an_odd_version():
    states = {
        (m["name"], m.get("version")): m["state"] for m in APP.test_client().get("/api/v1/models").get_json()["models"]
    }
    assert states[("plus", "1.0+local")] != "failed"
    assert "failed" in {state for (name, _), state in states.items() if name == "broken"}


@schema.parametrize()
@settings(max_examples=100, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_api_honours_its_openapi_document(case):
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if case.operation.path in ADMIN_PATHS else None
    case.call_and_validate(headers=headers, checks=ALL_CHECKS)


def test_schemathesis_cli_with_all_checks_against_a_live_server(tmp_path):
    """`schemathesis run --checks all`, as the issue ran it, on a real socket (the config file: CONFIG)."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--no-color",
    ]
    with serve(APP) as base:
        done = subprocess.run(
            [*command, f"{base}/api/v1/openapi.json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=CLI_SECONDS,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]


def test_what_schemathesis_found_stays_fixed():
    """Its findings on this document, pinned: a number for a date-time refused (ST201), OPTIONS on the export not
    advertising the DELETE of /history/<id> (ST205), optional query parameters documented as sendable empty."""
    client = APP.test_client()
    for path in ("/api/v1/history", "/api/v1/history/export"):
        answer = client.get(f"{path}?until=0.5")
        assert answer.status_code == 422 and answer.get_json()["error"]["details"][0]["loc"] == ["query", "until"]
    assert "DELETE" not in client.options("/api/v1/history/export").headers["Allow"]
    document = client.get("/api/v1/openapi.json").get_json()
    before = next(p for p in document["paths"]["/api/v1/jobs"]["get"]["parameters"] if p["name"] == "before")
    assert before["allowEmptyValue"] is True and client.get("/api/v1/jobs?before=").status_code == 200
