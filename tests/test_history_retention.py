"""AI_SERVICE_HISTORY_DAYS: old rows go on a schedule, and with them the stored images no remaining row names."""

from __future__ import annotations

import hashlib
import io
import os
import time
from datetime import UTC, datetime, timedelta

from PIL import Image
from sqlalchemy import func, select, update

from ai_service.service.history.recorder import open_history
from ai_service.service.upload import Caller, Upload
from ai_service.settings import load_settings
from ai_service.storage.schema import Prediction

CALLER = Caller("api", "req-1", "ip:127.0.0.1")
MODEL = ("digits", "1.0", "classification")


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), shade).save(buffer, "PNG")
    return buffer.getvalue()


def history_in(home, **overrides):
    settings = load_settings({"home": str(home), "history_images": "all", "history_days": 30, **overrides})
    settings.ensure_dirs()
    return open_history(settings)


def record(history, data: bytes, name: str) -> str:
    result = {
        "index": 0,
        "width": 8,
        "height": 8,
        "mode": "L",
        "predictions": [{"label": "1", "index": 1, "score": 1.0}],
    }
    return history.record(CALLER, MODEL, [Upload(data, name)], [result], {"total": 1.0}, 1)[0]


def age(history, row_id: str, days: float) -> None:
    with history.engine.begin() as connection:
        moment = datetime.now(UTC) - timedelta(days=days)
        connection.execute(update(Prediction).where(Prediction.id == row_id).values(created_at=moment))


def test_prune_deletes_old_rows_and_only_the_images_nobody_needs(tmp_path):
    history = history_in(tmp_path)
    old_only, shared, fresh = png(10), png(20), png(30)
    old_ids = [record(history, old_only, "old.png"), record(history, shared, "shared-old.png")]
    keep_ids = [record(history, shared, "shared-new.png"), record(history, fresh, "new.png")]
    assert history.writer.flush(10)
    for row_id in old_ids:
        age(history, row_id, 45)
    past = time.time() - 45 * 86400
    for digest in history.blobs.digests():  # the files are as old as their first row
        os.utime(history.blobs.path(digest), (past, past))
    assert history.prune() == 2
    with history.engine.connect() as connection:
        assert set(connection.scalars(select(Prediction.id))) == set(keep_ids)
    assert set(history.blobs.digests()) == {hashlib.sha256(shared).hexdigest(), hashlib.sha256(fresh).hexdigest()}
    assert history.blobs.get(hashlib.sha256(shared).hexdigest()) == shared
    history.close()


def test_the_writer_runs_retention_on_its_schedule(tmp_path):
    history = history_in(tmp_path)
    history.writer.maintenance_every_s = 0.3  # the default is hourly; the first run comes after min(60 s, period)
    stale = record(history, png(40), "stale.png")
    assert history.writer.flush(10)
    age(history, stale, 31)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with history.engine.connect() as connection:
            if connection.scalar(select(func.count()).select_from(Prediction)) == 0:
                break
        time.sleep(0.1)
    else:
        raise AssertionError("the scheduled clean-up never deleted the 31-day-old row")
    history.close()


def test_no_retention_when_days_is_zero(tmp_path):
    history = history_in(tmp_path, history_days=0)
    assert history.writer.maintenance is None
    history.close()
