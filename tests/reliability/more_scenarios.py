"""Scenarios 2, 3 and 6 (see scenarios.py for 1, 4, 5, 7 and long_scenarios.py for 8, 9, 10)."""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import requests

from schemas.codec import MAGIC, CommandCodec, envelope_to_datum
from schemas.partitioning import partition_for
from tests.reliability.auth import HEADERS
from tests.reliability.harness import ReadySampler, Suite, base_url, stage
from tests.reliability.load import Readers
from tests.reliability.own_kafka import OwnKafka
from tests.reliability.results import Row
from tests.reliability.toxiproxy import Toxiproxy
from tests.support.projector_log import (
    high_watermarks,
    produce_raw,
    read_topic_messages,
)
from tests.support.services import free_port
from tests.unit.builders import create, update

RATE = 25.0


# -- 2: the 3-node cluster -------------------------------------------------------------
def s2_cluster(suite: Suite) -> list[Row]:
    cluster = OwnKafka.create(suite.base / "cluster", 3)
    rows = []
    try:
        cluster.start(timeout=300)
        row = Row("2a", "3 nodes RF 3 min ISR 2: leader kill -9")
        with stage(suite, "s2a", kafka=cluster) as st:
            api = st.command_api()
            st.projector()
            load = st.load(api, rate=RATE).start()
            time.sleep(8)
            leaders = cluster.leaders(st.settings.commands_topic)
            ends = high_watermarks(
                st.bootstrap, st.settings.commands_topic, st.settings.commands_partitions
            )
            # the leader of the partition with the most records
            busiest = leaders[max(ends, key=lambda q: (ends[q], -q))]
            node = cluster.node(busiest)
            w = st.window(f"node {busiest} down")
            node.kill()
            time.sleep(15)
            cluster.start_nodes([node])
            backlog = st.end(w)
            row.run = (
                f"{RATE:.0f} writes/s; SIGKILL of node {busiest}, leader of the busiest partition "
                f"({sum(1 for v in leaders.values() if v == busiest)}/{len(leaders)} partitions); "
                "down 15 s, restarted"
            )
            st.finish(row, load, backlog, tail=10)
        rows.append(row)

        row = Row("2b", "3 nodes: two of three down")
        try:
            with stage(suite, "s2b", kafka=cluster) as st:
                api = st.command_api()
                st.projector()
                load = st.load(api, rate=RATE).start()
                time.sleep(8)
                first, second = cluster.nodes[0], cluster.nodes[1]
                w = st.window("nodes 1+2 down")
                first.kill()
                second.kill()
                time.sleep(20)
                returned_at = st.clock.now()
                cluster.start_nodes([first], timeout=300)
                backlog = st.end(w)
                time.sleep(5)
                cluster.start_nodes([second], timeout=300)
                row.run = (
                    f"{RATE:.0f} writes/s; SIGKILL of nodes 1 and 2 for 20 s, "
                    "node 1 restarted, then node 2"
                )
                st.finish(row, load, backlog, tail=10)
                # a request sent after the kill that got a 202 before a node was back
                # would be a 202 without min ISR 2
                bad = [
                    a
                    for a in load.attempts
                    if a.status == 202 and a.sent > w.start + 1.0 and a.answered < returned_at
                ]
                during = [
                    a for a in load.attempts if w.start + 1.0 < a.sent and a.answered < returned_at
                ]
                row.expect(
                    f"no 202 while two of three nodes were down "
                    f"({len(bad)} of {len(during)} answers)",
                    not bad,
                )
        except Exception as exc:  # keep row 2a when 2b cannot run to its end
            row.error = f"{type(exc).__name__}: {exc}"[:500]
        rows.append(row)
    finally:
        cluster.stop()
    return rows


# -- 3: network faults through Toxiproxy ---------------------------------------------
def s3_network(suite: Suite) -> list[Row]:
    tp = Toxiproxy.start(suite.base / "toxiproxy.log")
    suite.toxiproxy = tp
    node = suite.kafka.nodes[0]
    tp.proxy(
        "kafka-command",
        suite.proxy_ports["CMDPROXY"],
        f"127.0.0.1:{node.proxied['CMDPROXY'][0]}",
    )
    tp.proxy(
        "kafka-projector",
        suite.proxy_ports["PROJPROXY"],
        f"127.0.0.1:{node.proxied['PROJPROXY'][0]}",
    )
    store_projector, store_query = free_port(), free_port()
    tp.proxy("store-projector", store_projector, f"127.0.0.1:{suite.store.port}")
    tp.proxy("store-query", store_query, f"127.0.0.1:{suite.store.port}")
    links = [
        ("3a", "command API - Kafka", "kafka-command"),
        ("3b", "projector - Kafka", "kafka-projector"),
        ("3c", "projector - store", "store-projector"),
        ("3d", "query API - store", "store-query"),
    ]
    rows = []
    try:
        for label, title, link in links:
            row = Row(label, f"network faults {title}")
            with stage(suite, f"s{label}") as st:
                cmd_env = {}
                proj_env = {}
                query_env = {}
                if link == "kafka-command":
                    cmd_env["KAFKA_BOOTSTRAP_SERVERS"] = (
                        f"127.0.0.1:{suite.proxy_ports['CMDPROXY']}"
                    )
                elif link == "kafka-projector":
                    proj_env["KAFKA_BOOTSTRAP_SERVERS"] = (
                        f"127.0.0.1:{suite.proxy_ports['PROJPROXY']}"
                    )
                elif link == "store-projector":
                    proj_env["MONGODB_URI"] = f"mongodb://127.0.0.1:{store_projector}"
                else:
                    query_env["MONGODB_URI"] = f"mongodb://127.0.0.1:{store_query}"
                api = st.command_api(**cmd_env)
                proj = st.projector(**proj_env)
                query = st.query_api(**query_env)
                load = st.load(api, rate=RATE).start()
                readers = Readers(base_url(query), load.items, rate=5).start()
                sampler = ReadySampler(
                    st.clock,
                    {"api": base_url(api), "projector": base_url(proj), "query": base_url(query)},
                ).start()
                time.sleep(5)
                backlog = None
                for fault, toxics, hold in (
                    ("latency 500 ms", [("latency", "downstream", {"latency": 500})], 10),
                    ("reset mid-stream", [("reset_peer", "downstream", {"timeout": 0})], 2),
                    (
                        "blackhole 20 s",
                        [
                            ("timeout", "upstream", {"timeout": 0}),
                            ("timeout", "downstream", {"timeout": 0}),
                        ],
                        20,
                    ),
                ):
                    w = st.window(fault)
                    for i, (kind, stream, attrs) in enumerate(toxics):
                        tp.add(link, f"t{i}", kind, stream, **attrs)
                    time.sleep(hold)
                    tp.clear(link)
                    backlog = st.end(w)
                    if backlog is not None and fault != "blackhole 20 s":
                        backlog.wait()
                    time.sleep(5)
                row.run = (
                    f"{RATE:.0f} writes/s + 5 reads/s; on {title}: 500 ms latency 10 s, "
                    "reset_peer 2 s, blackhole 20 s (toxiproxy)"
                )
                st.finish(row, load, backlog, tail=15)
                readers.stop()
                sampler.stop()
                reads = dict(readers.statuses)
                row.notes.append(f"reads through the query API: {reads}")
                server_errors = sum(n for code, n in reads.items() if code >= 500 and code != 503)
                row.expect(
                    f"no read answered 5xx other than 503 ({server_errors})", not server_errors
                )
                last = {n: c for _t, n, c, _a in sampler.samples}
                row.expect(
                    f"every /readyz 200 at the end ({last})", all(c == 200 for c in last.values())
                )
            rows.append(row)
    finally:
        tp.stop()
        suite.toxiproxy = None
    return rows


# -- 6: poison records ---------------------------------------------------------------
def _poison(kind: str, rng: random.Random, items: list[str]) -> tuple[bytes, str | None]:
    codec = CommandCodec()
    valid = codec.encode(create(str(__import__("uuid").uuid4()), "poison"))
    if kind == "random bytes":
        return os.urandom(rng.randint(1, 300)), None
    if kind == "truncated Avro":
        return valid[: rng.randint(11, len(valid) - 1)], None
    if kind == "unknown fingerprint":
        return MAGIC + os.urandom(8) + valid[10:], None
    if kind == "impossible create":
        datum = envelope_to_datum(create(str(__import__("uuid").uuid4()), "x"))
        name, body = datum["payload"]
        datum["payload"] = (
            name,
            {**body, "title": "", "dueDate": "2026-02-30", "tags": ["a", "a"]},
        )
        return codec.encode_datum(datum), None
    # an update of an existing item that sets the title to null (the API answers 422)
    target = rng.choice(items) if items else str(__import__("uuid").uuid4())
    datum = envelope_to_datum(update(target, title="x"))
    name, body = datum["payload"]
    datum["payload"] = (name, {**body, "title": None})
    return codec.encode_datum(datum), target


POISON_KINDS = [
    "random bytes",
    "truncated Avro",
    "unknown fingerprint",
    "impossible create",
    "impossible update",
]


def s6_poison(suite: Suite) -> list[Row]:
    row = Row("6", "poison records among good ones")
    rng = random.Random(6)
    with stage(suite, "s6") as st:
        s = st.settings
        api = st.command_api()
        proj = st.projector()
        query = st.query_api()
        load = st.load(api, rate=RATE).start()
        time.sleep(5)
        sent: dict[bytes, str] = {}
        for i in range(40):
            kind = POISON_KINDS[i % len(POISON_KINDS)]
            key = f"poison-{i}".encode()
            value, item = _poison(kind, rng, list(load.items))
            # an update goes where its item's commands go (as the command API would put it)
            partition = (
                partition_for(item, s.commands_partitions)
                if item
                else rng.randrange(s.commands_partitions)
            )
            produce_raw(st.bootstrap, s.commands_topic, partition, value, key=key)
            sent[key] = kind
            time.sleep(rng.uniform(0.1, 0.4))
        st.finish(row, load, st.backlog(), tail=5)
        dead = read_topic_messages(
            st.bootstrap, s.dlq_topic, s.commands_partitions, len(sent), timeout=60
        )
        in_dlq = {k: h for k, _v, h in dead if k is not None}
        for kind in POISON_KINDS:
            keys = [k for k, v in sent.items() if v == kind]
            with_reason = [k for k in keys if in_dlq.get(k, {}).get("dlq.reason")]
            row.expect(
                f"{kind}: {len(with_reason)}/{len(keys)} in the DLQ with a reason",
                len(with_reason) == len(keys),
            )
        reasons = Counter(
            h.get("dlq.reason", b"").decode(errors="replace").split(":")[0] for h in in_dlq.values()
        )
        row.notes.append(f"DLQ reasons: {dict(reasons)}")
        row.expect("no good command in the DLQ", set(in_dlq) <= set(sent))
        code = _get(base_url(proj) + "/readyz")
        row.expect(f"projector ready at the end ({code})", code == 200)
        # every item still readable (an impossible payload that was applied may break reads)
        bad_reads: Counter[int] = Counter()
        for item in load.items[:300]:
            status = _get(f"{base_url(query)}/action-items/{item}")
            if status != 200:
                bad_reads[status] += 1
        row.expect(
            f"every created item readable through the query API ({dict(bad_reads)})", not bad_reads
        )
        row.run = f"{RATE:.0f} writes/s; 40 bad records (8 of each of 5 kinds) produced among them"
    return [row]


def _get(url: str) -> int:
    try:
        return requests.get(url, headers=HEADERS, timeout=10).status_code
    except requests.RequestException:
        return 0
