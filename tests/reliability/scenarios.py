"""The fault scenarios of issue 19. Each one returns its rows; each is bounded in load and time."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable

from tests.reliability.harness import ReadySampler, Suite, base_url, stage
from tests.reliability.load import Readers
from tests.reliability.long_scenarios import s8_rebuild_kills, s9_soak, s10_generated_requests
from tests.reliability.more_scenarios import s2_cluster, s3_network, s6_poison
from tests.reliability.results import Row

RATE = 25.0  # writes/s offered by the load in the fault scenarios


def s1_broker_kill(suite: Suite) -> list[Row]:
    row = Row("1", "single broker kill -9, restart")
    node = suite.kafka.nodes[0]
    with stage(suite, "s1") as st:
        api = st.command_api()
        st.projector()
        load = st.load(api, rate=RATE).start()
        time.sleep(8)
        w = st.window("broker down")
        node.kill()
        time.sleep(10)
        suite.kafka.start_nodes([node])
        backlog = st.end(w)
        restart = st.clock.now() - w.start - 10
        row.run = f"{RATE:.0f} writes/s; broker SIGKILL, down 10 s, restart took {restart:.0f} s"
        st.finish(row, load, backlog, tail=15)
    return [row]


def s4_projector_kills(suite: Suite) -> list[Row]:
    rng = random.Random(4)
    rows = []
    row = Row("4a", "projector kill -9 x10 at random moments")
    with stage(suite, "s4a") as st:
        api = st.command_api()
        proj = st.projector()
        load = st.load(api, rate=RATE).start()
        time.sleep(5)
        for i in range(10):
            time.sleep(rng.uniform(0.5, 4.0))
            w = st.window(f"kill {i + 1}")
            proj.kill()
            proj.start(timeout=120)
            w.end = st.clock.now()
        backlog = st.backlog()
        row.run = (
            f"{RATE:.0f} writes/s; 10 x SIGKILL of `projector run` 0.5-4 s apart, each restarted"
        )
        st.finish(row, load, backlog, tail=5)
        row.notes.append("restart of the projector counted as the fault window (no effect on 202s)")
    rows.append(row)

    row = Row("4b", "two projectors, one killed x5 (rebalances)")
    with stage(suite, "s4b") as st:
        api = st.command_api()
        st.projector()
        victim = st.projector()
        load = st.load(api, rate=RATE).start()
        time.sleep(5)
        for i in range(5):
            time.sleep(rng.uniform(2.0, 6.0))
            w = st.window(f"kill {i + 1}")
            victim.kill()
            time.sleep(rng.uniform(0.0, 3.0))
            victim.start(timeout=120)
            w.end = st.clock.now()
        backlog = st.backlog()
        row.run = f"{RATE:.0f} writes/s; 2 projectors in one group, one SIGKILLed 5 x and restarted"
        st.finish(row, load, backlog, tail=8)
    rows.append(row)
    return rows


def s5_store_down(suite: Suite) -> list[Row]:
    rows = []
    for label, down in (("5a", 10), ("5b", 60)):
        row = Row(label, f"store unavailable {down} s")
        with stage(suite, f"s{label}") as st:
            api = st.command_api()
            proj = st.projector()
            query = st.query_api()
            load = st.load(api, rate=RATE).start()
            readers = Readers(base_url(query), load.items, rate=5).start()
            sampler = ReadySampler(
                st.clock, {"projector": base_url(proj), "query": base_url(query)}
            ).start()
            time.sleep(6)
            w = st.window("store down")
            suite.store.kill()
            time.sleep(down)
            restart_at = st.clock.now()  # probes answered after this may see the store back
            suite.store.start(timeout=60)
            backlog = st.end(w)
            row.run = f"{RATE:.0f} writes/s + 5 reads/s; FerretDB SIGKILL, down {down} s, restarted"
            st.finish(row, load, backlog, tail=10)
            readers.stop()
            sampler.stop()
            assert w.end is not None
            settle = 5.0  # the services notice within their store timeout (2 s) and a probe
            for name in ("projector", "query"):
                during = sampler.between(name, w.start + settle, restart_at)
                # not ready = a 503, or no answer within the probe's 3 s (as a prober sees it)
                row.expect(
                    f"{name} /readyz never 200 while the store is down ({during.count(503)} x "
                    f"503, {during.count(0)} x no answer in 3 s, of {len(during)} probes)",
                    bool(during) and 200 not in during,
                )
                row.expect(
                    f"{name} /readyz 200 again at the end ({sampler.last(name)})",
                    sampler.last(name) == 200,
                )
            row.expect(
                f"projector lag back to 0 after the outage ({row.lag0} s)", row.lag0 is not None
            )
            row.notes.append(f"reads through the query API: {dict(readers.statuses)}")
        rows.append(row)
    return rows


def s7_command_api_restarts(suite: Suite) -> list[Row]:
    rows = []
    for label, how in (("7a", "SIGTERM"), ("7b", "SIGKILL")):
        row = Row(label, f"command API {how} under load, restart, clients retry")
        with stage(suite, f"s{label}") as st:
            api = st.command_api()
            st.projector()
            load = st.load(api, rate=RATE).start()
            time.sleep(8)
            w = st.window(f"API {how}")
            if how == "SIGTERM":
                api.signal(signal.SIGTERM)
                assert api.process is not None
                api.process.wait(60)
            else:
                api.kill()
            api.start(timeout=120)
            backlog = st.end(w)
            time.sleep(8)
            load.stop()
            confirmed = sorted({a.key for a in load.attempts if a.status == 202})
            again = random.Random(7).sample(confirmed, min(40, len(confirmed)))
            before = {a.key: a.command_id for a in load.attempts if a.status == 202}
            left = load.retry_unconfirmed(also=again)
            after = {a.key: a.command_id for a in load.attempts if a.retry and a.status == 202}
            same = sum(1 for k in again if after.get(k) == before[k])
            row.expect(
                f"{same}/{len(again)} confirmed requests sent again after the restart "
                "got the same commandId",
                same == len(again),
            )
            if left:
                row.notes.append(f"{left} requests still unconfirmed after retries")
            row.lag0 = backlog.wait()
            row.counts = st.count(load)
            row.run = (
                f"{RATE:.0f} writes/s; {how} of the API, restarted on its port; "
                "40 confirmed + every unconfirmed request re-sent"
            )
        rows.append(row)
    return rows


SCENARIOS: dict[str, Callable[[Suite], list[Row]]] = {
    "1": s1_broker_kill,
    "2": s2_cluster,
    "3": s3_network,
    "4": s4_projector_kills,
    "5": s5_store_down,
    "6": s6_poison,
    "7": s7_command_api_restarts,
    "8": s8_rebuild_kills,
    "9": s9_soak,
    "10": s10_generated_requests,
}
ORDER = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]
