"""The command API producer's librdkafka settings, and why each one is what it is.

Kept apart from the publisher (command_api/publisher.py), which only uses them:
these settings carry the log's write-once guarantee (docs/command-api.md, "One
produce call, one record"), so they are read and tested on their own.
"""

from __future__ import annotations

import logging

from servicekit.logs import Throttle

# librdkafka's own log lines go through Python logging (JSON), throttled: while the
# broker is down it reports the same failure several times a second.
kafka_log = logging.getLogger("command_api.librdkafka")
kafka_log.addFilter(Throttle())

# The producer's own queue (queued + in flight, not yet acknowledged): the memory bound
# while the log is down. A full queue refuses the next record at once (503, queue_full).
QUEUE_MAX_MESSAGES = 20_000
QUEUE_MAX_KBYTES = 32 * 1024


def producer_config(
    bootstrap: str,
    linger_ms: int,
    queue_max_messages: int = QUEUE_MAX_MESSAGES,
    queue_max_kbytes: int = QUEUE_MAX_KBYTES,
) -> dict[str, object]:
    """librdkafka settings: a produce call writes its record at most once, under its one key.

    librdkafka's idempotent producer writes one produce call twice when it bumps
    its epoch while a record that the broker may already have appended is
    waiting for a retry: the retry goes out under the new epoch and new sequence
    numbers, and the broker cannot tell it from a new record
    (confluentinc/librdkafka#4953). Both copies share the call's record key, so
    the log cleaner would keep only the later one. librdkafka 2.x bumps the epoch
    of an idempotent, non-transactional producer when

    - a record times out locally (``message.timeout.ms``): so records never time
      out (0 = infinite). A request still answers 503 at its own bound; its
      record stays with librdkafka and is written when the log is back (or
      dropped at shutdown): ``maybeWritten`` is true and a retry with the same
      Idempotency-Key awaits that attempt instead of producing a second one;
    - a request that is not the first in flight for its partition fails with
      OUT_OF_ORDER_SEQUENCE_NUMBER because the one before it failed (a leader
      without enough in-sync replicas, a leader change): so one request in
      flight per connection, and there is never a second one to fail that way;
    - a produce error is permanent (a record too large, no authorisation) or the
      broker lost the producer id: not produced by a healthy deployment (the
      default body limit, 64 KiB, is far below the broker's ``message.max.bytes``).

    A fatal error replaces the producer (a new producer id): the old one's
    records fail and are not resent.
    """
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": 0,
        "max.in.flight.requests.per.connection": 1,
        "queue.buffering.max.messages": queue_max_messages,
        "queue.buffering.max.kbytes": queue_max_kbytes,
        "linger.ms": linger_ms,
        # notice a broker that is back within a second or two, not after 10 s of backoff
        "reconnect.backoff.max.ms": 2000,
        "compression.type": "none",
        # librdkafka's own log lines go through Python logging (JSON, throttled)
        "logger": kafka_log,
        "log.connection.close": False,
    }
