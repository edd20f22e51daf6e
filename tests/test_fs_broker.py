"""The demo's file-system broker: a message appears whole or not at all, and a torn one is skipped, not fatal."""

import json
import os

import pytest
from kombu import Connection

from chisel import fs_broker


@pytest.fixture
def channel(tmp_path):
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "store_processed": False}
    with Connection("filesystem://", transport=fs_broker.Transport, transport_options=options) as connection:
        yield connection.default_channel


def test_a_message_appears_under_its_queue_name_only_when_written_whole(channel, tmp_path, monkeypatch):
    seen_at_rename = []
    replace = os.replace

    def watching_replace(source, target):
        seen_at_rename.append((sorted(os.listdir(tmp_path)), json.loads(open(source).read())))
        replace(source, target)

    monkeypatch.setattr(os, "replace", watching_replace)
    channel._put("celery", {"body": "x" * 100_000})
    ((before, payload),) = seen_at_rename
    assert [name.endswith(".celery.msg.part") for name in before] == [True]  # not yet readable as a message
    assert payload == {"body": "x" * 100_000}
    (name,) = os.listdir(tmp_path)
    assert name.endswith(".celery.msg")
    assert channel._get("celery") == {"body": "x" * 100_000}


def test_a_torn_message_is_skipped_and_the_next_one_read(channel, tmp_path):
    (tmp_path / "0_a.celery.msg").write_bytes(b"")
    (tmp_path / "0_b.celery.msg").write_bytes(b'{"body": ')
    channel._put("celery", {"body": "whole"})
    assert channel._get("celery") == {"body": "whole"}
    assert os.listdir(tmp_path) == []
