"""The log relay: forked workers' records reach one file whole, however long, and never interleaved."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest
from loguru import logger

from ai_service.server.log_relay import PAYLOAD_MAX, FileRelay

LONG = "x" * (5 * PAYLOAD_MAX)  # several pipe frames: other workers' frames may come in between


def log_from_child(index: int) -> None:
    for line in range(150):
        logger.info("child-{}-line-{}", index, line)
        if line % 50 == 0:
            logger.warning("child-{}-long-{} {} end", index, line, LONG)


@pytest.mark.parametrize("serialize", [False, True])
def test_forked_workers_write_whole_records_to_one_file(tmp_path, serialize):
    path = tmp_path / "relay.log"
    relay = FileRelay(path, level="INFO", format="{message}", serialize=serialize, rotation="50 MB")
    try:
        logger.debug("below the level: not written")
        logger.info("from the owner")
        context = multiprocessing.get_context("fork")
        children = [context.Process(target=log_from_child, args=(index,)) for index in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
            assert child.exitcode == 0
        relay.flush()
        lines = path.read_text().splitlines()
    finally:
        relay.close()
    messages = [json.loads(line)["record"]["message"] for line in lines] if serialize else lines
    assert "from the owner" in messages and not any("below the level" in m for m in messages)
    for index in range(3):
        assert [m for m in messages if m.startswith(f"child-{index}-line-")] == [
            f"child-{index}-line-{n}" for n in range(150)
        ]
        long = [m for m in messages if m.startswith(f"child-{index}-long-")]
        assert long == [f"child-{index}-long-{n} {LONG} end" for n in (0, 50, 100)]
    assert len(messages) == 1 + 3 * (150 + 3)


def test_the_owner_alone_writes_synchronously_after_flush(tmp_path):
    path = tmp_path / "single.log"
    relay = FileRelay(path, level="INFO", format="{level} {message}", serialize=False, rotation="50 MB")
    try:
        for n in range(500):
            logger.info("line {}", n)
        relay.flush()
        assert path.read_text().splitlines() == [f"INFO line {n}" for n in range(500)]
    finally:
        relay.close()


def test_console_lines_can_ride_along_with_the_file(tmp_path):
    """Console not a terminal: the reader writes each batch to it too, the same text as the file."""
    read_end, write_end = os.pipe()
    path = tmp_path / "echo.log"
    relay = FileRelay(
        path, level="INFO", format="{level} {message}", serialize=False, rotation="50 MB", echo_fd=write_end
    )
    try:
        for n in range(20):
            logger.info("echoed {}", n)
        relay.flush()
        os.close(write_end)
        with os.fdopen(read_end) as console:
            echoed = console.read()
        assert echoed.splitlines() == path.read_text().splitlines() == [f"INFO echoed {n}" for n in range(20)]
    finally:
        relay.close()
