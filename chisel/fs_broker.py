"""Celery's file-system transport (the demo's broker) with whole messages only: written atomically, torn ones skipped."""

import logging
import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    # kombu writes a message in place: the file exists, empty, before its bytes land, and a worker polling the folder
    # at that moment reads "" and dies of the JSONDecodeError (beat writes from its own process while the worker reads).
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.part"  # kombu's reader takes only names ending in "<queue>.msg"
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        while True:  # each failed try has removed its file: the next one reads the next message, or raises Empty
            try:
                return super()._get(queue)
            except ValueError:
                logger.warning("Skipped an unreadable message in queue %r of %s", queue, self.data_folder_in)


class Transport(filesystem.Transport):
    Channel = Channel
