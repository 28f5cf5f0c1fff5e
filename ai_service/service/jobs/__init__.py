"""Bulk jobs, free of Flask: many images through one model, stored in the database and run chunk by chunk.

`submit` stores the inputs (job store: the database or a shared folder) and the chunks, and hands them to the
executor: this process's threads (`local`), or Celery workers on any machine when a broker is configured.
Either runs `run_chunk`, which writes one history row per input (source `job`, the job's id and item index), so a
job's results are ordinary history rows. `status`, `listing`, `cancel`, `results` and `outputs_zip` read them.
"""

from ai_service.service.jobs.core import Jobs, open_jobs
from ai_service.service.jobs.results import outputs_zip, results
from ai_service.service.jobs.run import run_chunk
from ai_service.service.jobs.service import cancel, listing, status, submit

__all__ = ["Jobs", "cancel", "listing", "open_jobs", "outputs_zip", "results", "run_chunk", "status", "submit"]
