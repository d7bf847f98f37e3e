"""Benchmark of the whole pipeline against a raw aiokafka baseline (issue 8, part 1).

Everything runs on a Kafka broker of its own (deploy/broker.py), started on free ports with its
data in a temporary directory and stopped at the end, also on errors. Steps:

  setup     the benchmark definitions (DEFINITIONS below: 20 segments, 3 deliveries, 5 journeys
            of 4 stages; counts, windows, sums, attributes, segment references) are validated
            with load_definitions and applied with apply_definitions. `--events` N events of
            the demo's workload (cjo.workload.Workload) are Avro-encoded with the real codec and
            produced once, keyed as producers must, to the app's events topic. The workload is
            made of shards of ~1,000 profiles (the generator's cost grows with the square of its
            population), renamed apart and interleaved ten shards at a time, sized to reach
            about `--profiles` P profiles.
  baseline  a child process runs a plain aiokafka loop: consume the events topic from the
            beginning, Avro-decode each event, Avro-encode a ProfileInput holding its bytes
            (what the identity step wrote when issue 18 set its target; the worker now writes
            msgpack, schemas/internal.py, and the loop stays the same yardstick), produce it
            keyed by profile id to an output topic (acks=all), one batch at a time. The child
            reports its own CPU time (getrusage), its wall time from the first batch to the
            last acknowledgement, and its peak RSS.
  ours      a real `cjo worker` (cjo.processes.WorkerProcess) on the same app and topic, from an
            empty state. It processes all N events, or only the last `--worker-events` W of
            them (for a quick run): its consumer group's offsets are committed
            past the others before it starts. CPU (/proc/<pid>/stat) and wall time run from the
            first event its identity step counted to the last input its profile agent applied
            (its /stats/ view, sampled), and it must then be caught up (wait_until_caught_up
            over events and profile-inputs, as the demo checks). Peak RSS is VmHWM. Kafka
            records per event: what it read (the events, then the profile inputs it wrote) and
            wrote (the end offsets of every topic it writes, before it started and once caught
            up), over the events.
  latency   the same worker, caught up, gets the next events of the workload at half of its
            measured rate for `--latency-seconds`, then at a quarter of it for
            `--quarter-seconds` (both shorter if the workload's spare events run out: the
            durations are printed). A paced producer sends, every 2 ms, the events due by
            then, each stamped (CreateTime) as it is sent. Latency of an event = timestamp of
            its first output record on journey-transitions or segment-changes (paired by
            caused_by = event_id; the worker stamps a record when it hands it to its producer)
            minus the input record's CreateTime; p50 and p99 are printed, with the first hop's
            share (produce -> the event's profile input), the producer's send ->
            acknowledgement time, and the worker's CPU per paced event: from the first send
            until it applied the last input (its /stats/ sampled), as for the bulk figure;
            and until it is caught up (its offsets committed, up to a commit interval later).
  idle      the same worker, caught up, with nothing to read for `--idle-seconds` (after 3 s
            to settle): its CPU over that time, as a share of a core (fetches of an idle
            worker: topology.machinery.fetch_pacing).
  restore   (--restore) the worker is stopped, its RocksDB directory deleted and the worker
            started again: the time until its /ready probe answers (tables recovered) gives
            records/s over the records of the profiles changelog (the aliases and wake-ups
            changelogs are restored too); it must then be caught up, a probe event having gone
            through. A restart with the directory intact is timed too: its startup alone.

The worker's /stats/ view needs a bearer token: the run makes a read token of its own.

The clock of the worker is stopped at the workload's start (as in the tests), so journey waits
never fall due: every input is an event or a merge step and the counts stay exact.

Run from the repository root (prints figures; it is not a test):

    python -m bench.pipeline                                   # N=W=100,000, P=100,000
    python -m bench.pipeline --events 20000 --worker-events 5000 --profiles 5000 --restore
    python -m bench.pipeline --events 30000 --profiles 20000 --json   # figures as JSON too

With `--json` the last line printed is one JSON object (`summary`): `ratio` (the raw loop's CPU
per event over the worker's: the worker's events/s per core over the raw loop's),
`worker_us_per_event`, `raw_us_per_event`, `events_per_s`, `records_per_event`, `peak_rss_mb`,
and per latency phase (`half`, `quarter`) `rate_*`, `p50_ms_*_rate`, `p99_ms_*_rate`,
`paced_us_per_event_*_rate` and a few more, and `idle_cpu_percent`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.process import peak_rss_mb
from cjo.clock import Clock
from cjo.kafka_io import produce, read_to_end, wait_until_caught_up
from cjo.processes import WorkerProcess
from cjo.settings import Settings
from cjo.web_client import WebError, call, get_json
from cjo.workload import Workload
from deploy.broker import BrokerError, LocalBroker
from deploy.ports import free_port, free_port_pair
from schemas.codec import AvroCodec
from schemas.internal import ProfileInputCodec
from state.definitions import load_definitions
from topology.pipeline import topics
from topology.pipeline.definitions import apply_definitions

DEFINITIONS = """
segments:
  # Attributes (latest value of `attribute` events).
  - {id: tokyo, condition: {attribute.pref_cd: {eq: 13}}}
  - {id: osaka, condition: {attribute.pref_cd: {eq: 27}}}
  - {id: kanto, condition: {attribute.pref_cd: {in: [8, 9, 10, 11, 12, 13, 14]}}}
  - {id: premium, condition: {attribute.plan: {eq: premium}}}
  - {id: free_plan, condition: {attribute.plan: {eq: free}}}
  # Counts, sums and maxima over the whole history.
  - {id: buyers, condition: {count.purchase: {gte: 1}}}
  - {id: repeat_buyers, condition: {count.purchase: {gte: 3}}}
  - {id: big_spenders, condition: {sum.purchase.amount: {gte: 50000}}}
  - {id: big_baskets, condition: {max.purchase.items: {gte: 4}}}
  - {id: high_value_cart, condition: {sum.add_to_cart.price: {gte: 30000}}}
  - {id: members, condition: {count.identify: {gte: 1}}}
  # Windows.
  - {id: active_today, condition: {count.view: {gte: 5, within: 1d}}}
  - {id: active_week, condition: {count.*: {gte: 10, within: 7d}}}
  - id: cart_abandoners
    condition:
      all:
        - {count.add_to_cart: {gte: 1}}
        - {since.add_to_cart: {lt: 2d}}
        - not: {segment: buyers}
  - id: lapsed_buyers
    condition: {all: [{segment: buyers}, {since.purchase: {gt: 7d}}]}
  # Latest values of event fields.
  - {id: searchers, condition: {last.view.path: {eq: /search}}}
  - {id: banner_clickers, condition: {last.click.target: {eq: banner}}}
  - {id: campaign_visitors, condition: {last.__metadata.path: {eq: /campaign/spring}}}
  # Segment references.
  - {id: tokyo_buyers, condition: {all: [{segment: tokyo}, {segment: buyers}]}}
  - id: vip
    condition:
      any:
        - {segment: big_spenders}
        - all: [{segment: premium}, {segment: repeat_buyers}]
deliveries:
  - id: search_banner
    segment: tokyo
    trigger: {all: [{event.name: {eq: view}}, {request.path: {eq: /search}}]}
    limits: {total: 3, per_day: 1}
    variants:
      - {id: spring, weight: 50, payload: {banner: spring-sale}}
      - {id: summer, weight: 50, payload: {banner: summer-sale}}
  - id: cart_reminder
    segment: cart_abandoners
    trigger: {event.name: {eq: view}}
    limits: {total: 2}
    variants:
      - {id: coupon, weight: 30, payload: {coupon: CART10}}
      - {id: plain, weight: 70, payload: {message: "Your cart is waiting"}}
  - id: welcome_member
    segment: members
    trigger: {event.name: {eq: identify}}
    limits: {total: 1}
journeys:
  - id: onboarding
    description: New members, from the first login to the fourth purchase.
    entry: {event.name: {eq: identify}}
    reentry: none
    goal: {count.purchase: {gte: 4}}
    stages:
      - id: welcome
        steps:
          - {id: hello, kind: activation, destination: email, payload: {template: welcome}, next: wait_visit}
          - {id: wait_visit, kind: wait, condition: {event.name: {eq: view}}, timeout: 1d, next: check, on_timeout: nudge}
          - {id: nudge, kind: activation, destination: push, payload: {template: come-back}, next: check}
          - id: check
            kind: decision
            branches: [{id: active, condition: {segment: active_today}, next: offer}]
            else: later
          - id: offer
            kind: ab_test
            variants: [{id: coupon, weight: 50, next: join}, {id: content, weight: 50, next: join}]
          - {id: join, kind: merge, next: wait_offer}
          - {id: wait_offer, kind: wait, duration: 2h, next: to_browsing}
          - {id: later, kind: wait, duration: 1d, next: to_browsing}
          - {id: to_browsing, kind: jump, stage: browsing}
      - id: browsing
        entry: {count.view: {gte: 8}}
        milestone: {any: [{count.add_to_cart: {gte: 1}}, {count.purchase: {gte: 1}}]}
        steps:
          - {id: picks, kind: activation, destination: email, payload: {template: picks}, next: browse_wait}
          - {id: browse_wait, kind: wait, duration: 7d, next: browse_end}
          - {id: browse_end, kind: end}
      - id: cart
        milestone: {count.purchase: {gte: 2}}
        steps:
          - {id: cart_wait, kind: wait, duration: 4h, next: cart_remind}
          - {id: cart_remind, kind: activation, destination: push, payload: {template: cart}, next: cart_hold}
          - {id: cart_hold, kind: wait, duration: 3d, next: cart_end}
          - {id: cart_end, kind: end}
      - id: loyal
        steps:
          - {id: thanks, kind: activation, destination: email, payload: {template: thanks}, next: loyal_wait}
          - {id: loyal_wait, kind: wait, duration: 30d, next: loyal_end}
          - {id: loyal_end, kind: end}
  - id: cart_recovery
    description: Profiles who left something in the cart, until they buy.
    entry: {segment: cart_abandoners}
    reentry: unless_goal
    cooldown: 7d
    goal: {segment: buyers}
    exits: [{since.add_to_cart: {gt: 30d}}]
    stages:
      - id: abandoned
        steps:
          - {id: grace, kind: wait, duration: 1h, next: first_reminder}
          - {id: first_reminder, kind: activation, destination: push, payload: {template: cart}, next: after_first}
          - {id: after_first, kind: wait, condition: {event.name: {eq: view}}, timeout: 1d, next: to_returned, on_timeout: to_reminded}
          - {id: to_returned, kind: jump, stage: returned}
          - {id: to_reminded, kind: jump, stage: reminded}
      - id: reminded
        exits: [{segment: lapsed_buyers}]
        steps:
          - id: pick_channel
            kind: decision
            branches: [{id: member, condition: {segment: members}, next: mail}]
            else: second_push
          - {id: mail, kind: activation, destination: email, payload: {template: cart-2}, next: reminded_wait}
          - {id: second_push, kind: activation, destination: push, payload: {template: cart-2}, next: reminded_wait}
          - {id: reminded_wait, kind: wait, duration: 2d, next: reminded_end}
          - {id: reminded_end, kind: end}
      - id: returned
        entry: {last.view.path: {eq: /cart}}
        milestone: {sum.add_to_cart.price: {gte: 20000}}
        steps:
          - {id: returned_wait, kind: wait, duration: 6h, next: returned_offer}
          - {id: returned_offer, kind: activation, destination: onsite, payload: {banner: free-shipping}, next: returned_end}
          - {id: returned_end, kind: end}
      - id: checkout
        entry: {segment: high_value_cart}
        steps:
          - {id: coupon, kind: activation, destination: email, payload: {coupon: CART5}, next: checkout_wait}
          - {id: checkout_wait, kind: wait, duration: 1d, next: checkout_end}
          - {id: checkout_end, kind: end}
  - id: upsell
    description: Free-plan buyers, until they go premium.
    entry: {all: [{segment: buyers}, {segment: free_plan}]}
    reentry: unless_goal
    cooldown: 14d
    goal: {segment: premium}
    exits: [{segment: lapsed_buyers}]
    stages:
      - id: eligible
        steps:
          - {id: eligible_wait, kind: wait, duration: 1d, next: eligible_mail}
          - {id: eligible_mail, kind: activation, destination: email, payload: {template: plans}, next: eligible_hold}
          - {id: eligible_hold, kind: wait, duration: 7d, next: eligible_end}
          - {id: eligible_end, kind: end}
      - id: offered
        entry: {count.purchase: {gte: 2}}
        milestone: {count.click: {gte: 3}}
        steps:
          - id: offer_split
            kind: ab_test
            variants: [{id: discount, weight: 30, next: offer_discount}, {id: trial, weight: 70, next: offer_trial}]
          - {id: offer_discount, kind: activation, destination: email, payload: {offer: 20-off}, next: offer_wait}
          - {id: offer_trial, kind: activation, destination: email, payload: {offer: trial}, next: offer_wait}
          - {id: offer_wait, kind: wait, duration: 3d, next: offer_end}
          - {id: offer_end, kind: end}
      - id: engaged
        entry: {count.click: {gte: 5}}
        steps:
          - {id: engaged_wait, kind: wait, days: [sat, sun], next: engaged_push}
          - {id: engaged_push, kind: activation, destination: push, payload: {template: weekend}, next: engaged_end}
          - {id: engaged_end, kind: end}
      - id: committed
        entry: {segment: big_spenders}
        steps:
          - {id: call, kind: activation, destination: crm, payload: {task: call}, next: committed_wait}
          - {id: committed_wait, kind: wait, duration: 14d, next: committed_end}
          - {id: committed_end, kind: end}
  - id: reactivation
    description: Buyers who have not bought for a week.
    entry: {segment: lapsed_buyers}
    reentry: always
    cooldown: 30d
    goal: {count.purchase: {gte: 1, within: 7d}}
    stages:
      - id: lapsed
        steps:
          - {id: miss_you, kind: activation, destination: email, payload: {template: miss-you}, next: lapsed_wait}
          - {id: lapsed_wait, kind: wait, duration: 3d, next: lapsed_end}
          - {id: lapsed_end, kind: end}
      - id: contacted
        entry: {count.click: {gte: 1, within: 1d}}
        steps:
          - {id: contacted_wait, kind: wait, duration: 2h, next: contacted_push}
          - {id: contacted_push, kind: activation, destination: push, payload: {template: new-items}, next: contacted_end}
          - {id: contacted_end, kind: end}
      - id: visited
        entry: {count.view: {gte: 1, within: 1d}}
        milestone: {count.add_to_cart: {gte: 1, within: 1d}}
        steps:
          - {id: visited_wait, kind: wait, duration: 1d, next: visited_end}
          - {id: visited_end, kind: end}
      - id: active
        entry: {segment: active_today}
        steps:
          - {id: active_thanks, kind: activation, destination: onsite, payload: {banner: welcome-back}, next: active_wait}
          - {id: active_wait, kind: wait, duration: 7d, next: active_end}
          - {id: active_end, kind: end}
  - id: tokyo_campaign
    description: The spring campaign for Tokyo visitors.
    entry: {all: [{segment: tokyo}, {event.name: {eq: view}}]}
    reentry: none
    goal: {segment: repeat_buyers}
    exits: [{attribute.pref_cd: {ne: 13}}]
    stages:
      - id: aware
        steps:
          - {id: banner, kind: activation, destination: onsite, payload: {banner: spring}, next: aware_wait}
          - {id: aware_wait, kind: wait, duration: 1d, next: aware_end}
          - {id: aware_end, kind: end}
      - id: interested
        entry: {any: [{segment: banner_clickers}, {segment: campaign_visitors}]}
        steps:
          - {id: interested_mail, kind: activation, destination: email, payload: {template: spring-picks}, next: interested_wait}
          - {id: interested_wait, kind: wait, duration: 2d, next: interested_end}
          - {id: interested_end, kind: end}
      - id: carting
        entry: {count.add_to_cart: {gte: 1}}
        milestone: {count.purchase: {gte: 1}}
        steps:
          - {id: carting_wait, kind: wait, duration: 4h, next: carting_push}
          - {id: carting_push, kind: activation, destination: push, payload: {template: spring-cart}, next: carting_end}
          - {id: carting_end, kind: end}
      - id: buying
        steps:
          - {id: buying_thanks, kind: activation, destination: email, payload: {template: spring-thanks}, next: buying_wait}
          - {id: buying_wait, kind: wait, duration: 30d, next: buying_end}
          - {id: buying_end, kind: end}
"""

# Issue 20's sending rules, for `--rules`: the profile's time zone (the workload's `tz`
# attribute), caps on every destination the definitions send to, tight enough to suppress some,
# and quiet hours over the workload's hours on most profiles' clocks (its events run from 00:00
# UTC, 09:00 in Tokyo) that drop web and push activations (held ones would wait for a clock
# that the benchmark keeps stopped).
RULES = """
time_zone: {attribute: tz, default: Asia/Tokyo}
caps:
  email: {max: 1, per: 1d}
  push: {max: 1, per: 7d}
  web: {max: 2, per: 1d}
quiet_hours:
  web: {from: "12:00", to: "13:00", then: drop}
  push: {from: "12:00", to: "14:00", then: drop}
"""


SHARD_PROFILES = 1000  # profiles per Workload: its generator costs O(events x population)
WAVE_SHARDS = 10  # shards active at the same time: a hot set of ~10,000 profiles
SESSION = 4  # events per visit (channel and round) when the counts allow it
STEP_MS = 1000  # event time advances one second per event of the whole log
SAMPLE_S = 0.5  # how often the worker's /stats/ and CPU are sampled
BASELINE_OUT = "bench-baseline-out"


def say(text: str = "") -> None:
    print(text, flush=True)


# -- the workload ---------------------------------------------------------------------------

def build_workload(total: int, profiles: int, seed: int = 7) -> list[tuple[bytes, dict]]:
    """`total` events over about `profiles` profiles, in the order they are to be produced."""
    shards = max(1, round(profiles / SHARD_PROFILES))
    per_shard = -(-total // shards)
    size = _population(seed, profiles / shards, per_shard)
    logs = [_shard_log(seed, s, size, size, per_shard) for s in range(shards)]
    rng = random.Random(seed)
    merged: list[tuple[bytes, dict]] = []
    for first in range(0, shards, WAVE_SHARDS):
        merged += _interleave(rng, logs[first:first + WAVE_SHARDS])
    merged = merged[:total]
    start = Workload().start_ms
    for n, (_, event) in enumerate(merged):  # times follow the final order
        event["time"] = start + n * STEP_MS
    return merged


def _population(seed: int, profiles: float, events: int) -> int:
    """Members (and as many anonymous visitors) of a shard such that `events` events reach
    about `profiles` profiles; found by trying on the first shard (the shards are alike)."""
    size = profiles * 0.38  # a member brings visitor ids of its own: fewer than `profiles`
    for _ in range(4):
        log = _shard_log(seed, 0, round(size), round(size), events)
        reached = len({e["user_id"] or e["visitor_id"] for _, e in log})
        if abs(reached - profiles) <= 0.03 * profiles:
            break
        # At most `profiles` of each: fewer events than profiles cannot reach them all.
        size = min(profiles, size * profiles / max(1, reached))
    return max(1, round(size))


def _shard_log(seed: int, shard: int, members: int, anonymous: int, events: int) -> list:
    workload = Workload(seed=seed * 10_000 + shard, members=members, anonymous=anonymous)
    channels = members + anonymous // 2  # every member and half the anonymous visit per round
    rounds = max(1, round(events / (channels * SESSION)))
    per_channel = -(-events // (rounds * channels))  # the generator rounds down: ask enough
    log = [e for r in workload.rounds(rounds, per_channel * channels) for e in r][:events]
    return [_renamed(f"s{shard}-", key, event) for key, event in log]


def _renamed(prefix: str, key: bytes, event: dict) -> tuple[bytes, dict]:
    """Every shard uses the same ids (u00001, v00001-0, a00001): give each its own."""
    for field in ("visitor_id", "user_id"):
        if event[field] is not None:
            event[field] = prefix + event[field]
    return (prefix + key.decode()).encode(), event


def _interleave(rng: random.Random, logs: list[list]) -> list:
    """A random merge that keeps each shard's own order (so each key's order)."""
    order = [i for i, log in enumerate(logs) for _ in log]
    rng.shuffle(order)
    iters = [iter(log) for log in logs]
    return [next(iters[i]) for i in order]


def describe_workload(log: list[tuple[bytes, dict]]) -> str:
    profiles = {e["user_id"] or e["visitor_id"] for _, e in log}
    names = Counter(e["name"] for _, e in log)
    mix = ", ".join(f"{n} {c / len(log):.0%}" for n, c in names.most_common())
    return (f"{len(log):,} events, {len(profiles):,} profiles "
            f"({len(log) / max(1, len(profiles)):.1f} events per profile); {mix}")


# -- broker, topics, small helpers ------------------------------------------------------------

def worker_stats(settings: Settings) -> dict | None:
    try:
        return get_json(settings, "/stats/", timeout=2)
    except (OSError, WebError):
        return None  # not up yet, or busy


def worker_ready(settings: Settings) -> bool:
    """The worker's /ready probe: rebalance done, tables recovered, definitions loaded."""
    try:
        status, _, _ = call(settings, "/ready", timeout=2)
    except OSError:
        return False
    return status == 200


def caught_up(settings: Settings, worker: WorkerProcess, timeout: float) -> bool:
    return asyncio.run(wait_until_caught_up(
        settings.bootstrap_servers, settings.app_id,
        [settings.topic("events"), settings.topic("profile-inputs")],
        timeout=timeout, alive=worker.running))


def quantile(sorted_values: list, q: float):
    """Nearest-rank quantile of a sorted list."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))]


async def commit_offsets(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit `offsets` for `group` while no member is in it (a consumer without a group
    generation may do so), so that the group's next member starts there."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def read_since(bootstrap: str, topic: str, start: dict[int, int], timeout: float = 120):
    """The raw records of `topic` from the offsets `start` to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in start]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        ends = await consumer.end_offsets(tps)
        out, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            if not behind:
                return out
            for records in (await consumer.getmany(*behind, timeout_ms=500)).values():
                out += records
        raise TimeoutError(f"reading {topic} took more than {timeout:.0f}s")
    finally:
        await consumer.stop()


async def count_records(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        return sum([len(records) async for records in read_to_end(consumer)])
    finally:
        await consumer.stop()


def worker_topics(settings: Settings) -> dict[str, tuple[str, int]]:
    """Every topic the worker writes: our name -> (Kafka topic, partitions)."""
    return {spec.name: (spec.topic_name(settings), spec.partitions or settings.partitions)
            for spec in topics.ALL + topics.CHANGELOGS
            if spec not in (topics.EVENTS, topics.DEFINITIONS)}


async def records_written(settings: Settings) -> dict[str, int]:
    """Records in each topic the worker writes so far (the sum of its partitions' end
    offsets; the worker writes no transactions, so every offset is a record)."""
    named = worker_topics(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {name: [TopicPartition(topic, p) for p in range(partitions)]
               for name, (topic, partitions) in named.items()}
        ends = await consumer.end_offsets([tp for each in tps.values() for tp in each])
        return {name: sum(ends[tp] for tp in each) for name, each in tps.items()}
    finally:
        await consumer.stop()


def records_per_event(written: dict[str, int], events: int) -> float:
    """Kafka records the worker consumed and produced per event: it reads the events and the
    profile inputs it wrote itself (all of them, once caught up), and writes `written`
    (records per topic: profile inputs, outputs, changelogs, dead letters, manifests)."""
    return (events + written.get("profile-inputs", 0) + sum(written.values())) / events


# -- (a) the baseline, in a child process -------------------------------------------------------

async def baseline_loop(bootstrap: str, topic: str, out_topic: str, count: int,
                        timeout: float) -> dict:
    """Consume `count` events from the beginning, decode, encode a ProfileInput, produce it
    keyed by profile id; the figures cover the first batch to the last acknowledgement."""
    decoder = AvroCodec("event", topic)
    encoder = AvroCodec("profile_input", out_topic)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-baseline",
                                auto_offset_reset="earliest", enable_auto_commit=True,
                                auto_commit_interval_ms=2800)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        seen, began, cpu0 = 0, None, None
        deadline = time.monotonic() + timeout
        while seen < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if batches and began is None:
                began, cpu0 = time.perf_counter(), _cpu_self()
            acks = []
            for records in batches.values():
                for r in records:
                    event = decoder.decode(r.value)
                    profile = event["user_id"] or event["visitor_id"]
                    value = encoder.encode({
                        "kind": "event", "profile_id": profile, "source_partition": r.partition,
                        "source_offset": r.offset, "event": r.value})
                    acks.append(await producer.send(out_topic, value, key=profile.encode()))
            await asyncio.gather(*acks)
            seen += len(acks)
        elapsed, cpu = time.perf_counter() - (began or 0), _cpu_self() - (cpu0 or 0)
        return {"events": seen, "seconds": elapsed, "cpu_seconds": cpu,
                "peak_rss_mb": peak_rss_mb()}
    finally:
        await producer.stop()
        await consumer.stop()


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_baseline(settings: Settings, count: int) -> dict:
    topics.ensure_topics(settings, (topics.TopicSpec(BASELINE_OUT, "profile_input", "profile id"),))
    timeout = 120 + count / 1000
    cmd = [sys.executable, "-m", "bench.pipeline", "--baseline-child",
           json.dumps({"bootstrap": settings.bootstrap_servers, "topic": settings.topic("events"),
                       "out_topic": settings.topic(BASELINE_OUT), "count": count,
                       "timeout": timeout})]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60,
                          cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"the baseline failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["events"] < count:
        raise RuntimeError(f"the baseline saw {result['events']} of {count} events in time")
    return result


# -- (b) our worker ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    cpu: float  # worker CPU seconds
    events_in: int  # events the identity step accepted
    applied: int  # inputs the profile agent applied
    rejected: int  # events the identity step sent to the dead letters


def sample(worker: WorkerProcess, settings: Settings) -> Sample | None:
    stats = worker_stats(settings)
    if stats is None:
        return None
    return Sample(time.monotonic(), worker.cpu_seconds(), stats.get("events_in", 0),
                  stats.get("inputs_applied", 0), stats.get("dead_letters_total", 0))


def skip_to_last(positions: list[tuple[int, int]], keep: int) -> dict[int, int]:
    """Per partition, the offset of the first of the last `keep` records produced (the
    topic was empty before, so a partition's offsets count its records)."""
    offsets: dict[int, int] = {}
    for partition, offset in positions[:len(positions) - keep]:
        offsets[partition] = max(offsets.get(partition, 0), offset + 1)
    for partition, _ in positions:
        offsets.setdefault(partition, 0)
    return offsets


def measure_worker(settings: Settings, worker: WorkerProcess, events: int) -> dict:
    """Sample the worker until its profile agent stops moving after `events` events came in,
    confirm it is caught up, and take the figures between the first and the final sample."""
    deadline = time.monotonic() + 180 + events / 50  # ~20x below today's rate: it is stuck
    samples: list[Sample] = []
    while time.monotonic() < deadline and worker.running():
        s = sample(worker, settings)
        if s is not None and (s.events_in > 0 or samples):
            samples.append(s)
            quiet = len(samples) >= 4 and len({x.applied for x in samples[-4:]}) == 1
            if s.events_in + s.rejected >= events and quiet:
                break
        time.sleep(SAMPLE_S if samples else 0.1)  # finely until the first event is counted
    else:
        raise RuntimeError("the worker did not process the events in time"
                           + ("" if worker.running() else " (it exited)"))
    if not caught_up(settings, worker, 120):
        raise RuntimeError("the worker did not catch up (events and profile-inputs)")
    final = sample(worker, settings) or samples[-1]
    end = next((x for x in samples if x.applied >= final.applied), final)
    first = samples[0]
    measured = final.events_in - first.events_in  # the first sample's events ran before it
    if measured < 1 or end.at <= first.at:
        raise RuntimeError("too few worker events to measure: raise --worker-events")
    return {"events": measured, "events_in": final.events_in, "inputs": final.applied,
            "seconds": end.at - first.at, "cpu_seconds": end.cpu - first.cpu,
            "peak_rss_mb": peak_rss_mb(worker.proc.pid)}


# -- (c) latency ----------------------------------------------------------------------------------

PACE_TICK = 0.002  # seconds: the paced producer sends what is due every tick, not one by one


class Sampling:
    """The worker's CPU and /stats/ sampled in a thread (every SAMPLE_S / 2) while a latency
    phase runs: when it applied its last input is the end of its work."""

    def __init__(self, settings: Settings, worker: WorkerProcess) -> None:
        self.settings, self.worker = settings, worker
        self.samples: list[Sample] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampling":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stopped.wait(SAMPLE_S / 2):
            s = sample(self.worker, self.settings)
            if s is not None:
                self.samples.append(s)

    def end_of_work(self) -> "Sample | None":
        """The first sample that had seen every input the worker applied in the phase."""
        if not self.samples:
            return None
        final = self.samples[-1].applied
        return next(s for s in self.samples if s.applied >= final)


async def paced_produce(bootstrap: str, topic: str, records: list, rate: float
                        ) -> tuple[dict[str, int], list[int]]:
    """Send `records` at `rate` per second: every PACE_TICK, the events due by then, each
    stamped (CreateTime) as it is sent. Returns event id -> its CreateTime (ms), and the
    milliseconds from each send to the broker's acknowledgement (what the producer and the
    broker add to the latency). One wake-up per tick, not per event: the producer shares the
    machine's two cores with the worker and the broker (one per event took a third of a core
    at 2,000/s)."""
    codec = AvroCodec("event", topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent: dict[str, int] = {}
        acked: list[int] = []
        acks = []
        began = time.monotonic()
        i = 0
        while i < len(records):
            due = min(len(records), int((time.monotonic() - began) * rate) + 1)
            while i < due:
                key, event = records[i]
                now_ms = int(time.time() * 1000)
                ack = await producer.send(topic, codec.encode(event), key=key,
                                          timestamp_ms=now_ms)
                ack.add_done_callback(
                    lambda _, t=now_ms: acked.append(int(time.time() * 1000) - t))
                acks.append(ack)
                sent[event["event_id"]] = now_ms
                i += 1
            if i < len(records):
                await asyncio.sleep(max(PACE_TICK, began + i / rate - time.monotonic()))
        await asyncio.gather(*acks)
        return sent, sorted(acked)
    finally:
        await producer.stop()


def measure_latency(settings: Settings, worker: WorkerProcess, records: list,
                    rate: float) -> dict:
    bootstrap = settings.bootstrap_servers
    outputs = {"journey-transitions": "journey_transition", "segment-changes": "segment_change"}
    starts = {name: asyncio.run(end_offsets(bootstrap, settings.topic(name), settings.partitions))
              for name in [*outputs, "profile-inputs"]}
    snapshots0 = (worker_stats(settings) or {}).get("snapshots", 0)
    began, cpu0 = time.monotonic(), worker.cpu_seconds()
    with Sampling(settings, worker) as sampled:
        sent, acked = asyncio.run(paced_produce(bootstrap, settings.topic("events"), records,
                                                rate))
        produced_for = time.monotonic() - began
        if not caught_up(settings, worker, 120):
            raise RuntimeError("the worker did not catch up after the paced events")
        cpu_caught_up = worker.cpu_seconds() - cpu0
    # The worker's CPU until it applied the last input, as for the bulk figure (not until its
    # offsets were committed, up to a commit interval later, nor while the outputs are read).
    # How busy it was meanwhile: near 100% means the rate is its limit.
    end = sampled.end_of_work()
    cpu, busy = cpu_caught_up, cpu_caught_up / (time.monotonic() - began)
    if end is not None and end.at > began:
        cpu, busy = end.cpu - cpu0, (end.cpu - cpu0) / (end.at - began)
    # A snapshot (every CJO_SNAPSHOT_INTERVAL) takes up to half the worker's time while it runs.
    snapshots = (worker_stats(settings) or {}).get("snapshots", 0) - snapshots0
    first_output: dict[str, int] = {}
    for name, schema in outputs.items():
        codec = AvroCodec(schema, settings.topic(name))
        for r in asyncio.run(read_since(bootstrap, settings.topic(name), starts[name])):
            cause = codec.decode(r.value)["caused_by"]
            if cause in sent:
                first_output[cause] = min(first_output.get(cause, r.timestamp), r.timestamp)
    latencies = sorted(first_output[e] - sent[e] for e in first_output)
    # The first hop's share: produce -> the event's profile input written by the identity step.
    routed: dict[str, int] = {}
    input_codec = ProfileInputCodec(settings.topic("profile-inputs"))
    for r in asyncio.run(read_since(bootstrap, settings.topic("profile-inputs"),
                                    starts["profile-inputs"])):
        record = input_codec.decode(r.value)
        if record["event"] is not None:
            event_id = record["event"]["event_id"]
            if event_id in first_output:
                routed.setdefault(event_id, r.timestamp)
    first_hop = sorted(routed[e] - sent[e] for e in routed)
    return {"events": len(sent), "rate": len(sent) / produced_for, "seconds": produced_for,
            "with_output": len(latencies),
            "p50_ms": quantile(latencies, 0.50), "p99_ms": quantile(latencies, 0.99),
            "max_ms": latencies[-1] if latencies else None, "worker_busy": busy,
            "first_hop_p50_ms": quantile(first_hop, 0.50),
            "first_hop_p99_ms": quantile(first_hop, 0.99),
            "ack_p50_ms": quantile(acked, 0.50), "ack_p99_ms": quantile(acked, 0.99),
            "snapshots": snapshots,
            "cpu_per_event_us": cpu / len(sent) * 1e6,
            "cpu_per_event_to_commit_us": cpu_caught_up / len(sent) * 1e6}


# -- (d) restore --------------------------------------------------------------------------------

def time_to_ready(settings: Settings, start_worker, probe: list) -> tuple[float, float]:
    """Start a worker and send a probe event; the seconds until its /ready probe answers 200,
    and until it is caught up (the probe went through both agents, which run only once every
    table is restored)."""
    began = time.monotonic()
    worker = start_worker()
    try:
        asyncio.run(produce(settings.bootstrap_servers, settings.topic("events"), "event", probe))
        deadline = began + 600
        while not worker_ready(settings):
            if time.monotonic() > deadline or not worker.running():
                raise RuntimeError("the restarted worker did not get ready within 600 s")
            time.sleep(0.1)
        ready = time.monotonic() - began
        if not caught_up(settings, worker, max(1.0, deadline - time.monotonic())):
            raise RuntimeError("the restarted worker did not catch up within 600 s")
        return ready, time.monotonic() - began
    finally:
        worker.stop()


def measure_restore(settings: Settings, start_worker, probes: list) -> dict:
    changelog = topics.CHANGELOGS[0].topic_name(settings)  # <app>-profiles-changelog
    records = asyncio.run(count_records(settings.bootstrap_servers, changelog))
    warm_ready, warm = time_to_ready(settings, start_worker, probes[:1])
    shutil.rmtree(settings.worker_dir)
    cold_ready, cold = time_to_ready(settings, start_worker, probes[1:2])
    return {"records": records, "warm_s": warm, "cold_s": cold, "warm_ready_s": warm_ready,
            "cold_ready_s": cold_ready}


# -- the run ------------------------------------------------------------------------------------

def make_settings(tmp: Path) -> Settings:
    # The worker's /stats/ view needs a bearer token: one for this run only.
    return Settings.from_env().with_(
        app_id="bench", broker_url=f"kafka://127.0.0.1:{free_port_pair()}", data_dir=tmp,
        web_port=free_port(), snapshot_dir="", read_tokens=(secrets.token_urlsafe(24),))


def start_broker(broker) -> float:
    try:
        return broker.start(timeout=120)
    except BrokerError as exc:
        # The storage format fails when the random cluster id starts with "-" (the tool takes
        # it for an option): 1 start in 64. A new id is worth one more try.
        if "format" not in str(exc):
            raise
        shutil.rmtree(broker.data_dir, ignore_errors=True)
        return broker.start(timeout=120)


def run(args) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="cjo-bench-"))
    settings = make_settings(tmp)
    broker = LocalBroker.from_settings(settings)
    workers: list[WorkerProcess] = []
    try:
        took = start_broker(broker)
        say(f"Broker: Kafka {broker.version} on {broker.bootstrap} (started in {took:.1f}s), "
            f"data in {tmp}")
        return bench(args, settings, workers)
    except BaseException:
        if workers:
            say("Last lines of the worker's log:\n" + workers[-1].log_tail(30))
        raise
    finally:
        for w in workers:
            w.stop()
        broker.stop()
        if args.keep:
            say(f"Kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench(args, settings: Settings, workers: list) -> int:
    n = args.events
    w = n if args.worker_events is None else min(args.worker_events, n)
    topics.ensure_topics(settings)
    definitions = DEFINITIONS + RULES if args.rules else DEFINITIONS
    load_definitions(definitions)  # a bad definition stops here, with its place
    applied = asyncio.run(apply_definitions(settings, definitions))
    say(f"Applied {len(applied)} definitions (20 segments, 3 deliveries, 5 journeys of 4 "
        "stages" + ("; a time zone, caps on 3 destinations, quiet hours on 2)" if args.rules
                    else ")"))

    extra = max(20_000, n // 3)  # for the two latency phases and the restore probes
    t0 = time.monotonic()
    log = build_workload(n + extra, args.profiles)
    say(f"Workload: {describe_workload(log[:n])} (generated in {time.monotonic() - t0:.1f}s)")
    if n < 3 * args.profiles:
        say("  note: under 3 events per profile, most visits are a page load and one action; "
            "--events of 5x --profiles or more gives whole visits")
    t0 = time.monotonic()
    positions = asyncio.run(produce(settings.bootstrap_servers, settings.topic("events"),
                                    "event", log[:n]))
    say(f"Produced {n:,} events to {settings.topic('events')} in {time.monotonic() - t0:.1f}s")

    say(f"(a) baseline: raw aiokafka loop in a child process over all {n:,} events …")
    base = run_baseline(settings, n)

    say(f"(b) ours: a cjo worker over the last {w:,} of the {n:,} events …")
    asyncio.run(commit_offsets(settings.bootstrap_servers, settings.app_id,
                               settings.topic("events"), skip_to_last(positions, w)))
    clock = Clock(str(settings.data_dir / "clock"))
    clock.set(Workload().start_ms)  # waits never fall due: the counts stay exact
    env = {"CJO_CLOCK_FILE": clock.path}

    def start_worker() -> WorkerProcess:
        worker = WorkerProcess(settings, settings.data_dir / f"worker-{len(workers)}.log",
                               env).start()
        workers.append(worker)
        return worker

    written_before = asyncio.run(records_written(settings))
    worker = start_worker()
    ours = measure_worker(settings, worker, w)
    if ours["events_in"] != w:
        say(f"  note: the worker's identity step counted {ours['events_in']:,} events, "
            f"not {w:,}")
    written = asyncio.run(records_written(settings))
    ours["written"] = {name: count - written_before[name] for name, count in written.items()}
    ours["records_per_event"] = records_per_event(ours["written"], w)

    half_rate = args.latency_rate or 0.5 * ours["events"] / ours["seconds"]
    half_n, quarter_n = paced_counts(extra - 2, half_rate, args.latency_seconds,
                                     half_rate / 2, args.quarter_seconds)
    latency = {}
    for label, rate, paced in (("half", half_rate, log[n:n + half_n]),
                               ("quarter", half_rate / 2, log[n + half_n:n + half_n + quarter_n])):
        asked = "as asked" if args.latency_rate else "of ours"
        say(f"(c) latency: {len(paced):,} events at {rate:,.0f}/s ({label} {asked}) to the "
            "caught-up worker …")
        latency[label] = measure_latency(settings, worker, paced, rate)
    idle = None
    if args.idle_seconds > 0:
        say(f"(d) idle: the caught-up worker with nothing to read for {args.idle_seconds:g}s …")
        idle = measure_idle(worker, args.idle_seconds)
    worker.stop()

    restore = None
    if args.restore:
        say("(e) restore: restart with the RocksDB directory intact, then without it …")
        restore = measure_restore(settings, start_worker, log[n + half_n + quarter_n:][:2])

    report(base, ours, latency, restore, as_json=args.json, idle=idle)
    return 0


IDLE_SETTLE_S = 3.0  # after the last paced event: its commit, and a second without records


def measure_idle(worker: WorkerProcess, seconds: float) -> float:
    """The worker's CPU over `seconds` with nothing to read, as a share of one core."""
    time.sleep(IDLE_SETTLE_S)
    cpu0, t0 = worker.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (worker.cpu_seconds() - cpu0) / (time.monotonic() - t0)


def report(base: dict, ours: dict, latency: dict, restore: dict | None,
           as_json: bool = False, idle: float | None = None) -> None:
    """The table and notes; with `as_json`, then the figures as one JSON object on the last
    line."""
    print_report(base, ours, latency, restore)
    if idle is not None:
        say(f"Idle: the caught-up worker with nothing to read used {idle:.1%} of a core.")
    if as_json:
        figures = summary(base, ours, latency, restore)
        if idle is not None:
            figures["idle_cpu_percent"] = round(100 * idle, 2)
        say(json.dumps(figures))


def paced_counts(available: int, half_rate: float, half_seconds: float, quarter_rate: float,
                 quarter_seconds: float) -> tuple[int, int]:
    """Events for the half-rate and the quarter-rate phases: as many as their rates and
    durations ask for, both cut in the same proportion when the workload has fewer."""
    half, quarter = max(1, int(half_rate * half_seconds)), max(1, int(quarter_rate *
                                                                      quarter_seconds))
    if half + quarter > available:
        scale = available / (half + quarter)
        half, quarter = max(1, int(half * scale)), max(1, int(quarter * scale))
    return half, quarter


def per_event_us(r: dict) -> float:
    return r["cpu_seconds"] / r["events"] * 1e6


def events_per_s(r: dict) -> float:
    return r["events"] / r["seconds"]


def print_report(base: dict, ours: dict, latency: dict, restore: dict | None) -> None:
    """`latency`: the phase at half our rate ("half") and at a quarter ("quarter")."""
    base_us, ours_us = per_event_us(base), per_event_us(ours)
    rows = [
        ("events measured", f"{base['events']:,}", f"{ours['events']:,}", ""),
        ("events/s", f"{events_per_s(base):,.0f}", f"{events_per_s(ours):,.0f}",
         f"{events_per_s(ours) / events_per_s(base):.3f}"),
        ("CPU µs/event", f"{base_us:,.1f}", f"{ours_us:,.1f}", f"{ours_us / base_us:.1f}"),
        ("events/s per core (1e6/CPU µs)", f"{1e6 / base_us:,.0f}", f"{1e6 / ours_us:,.0f}",
         f"{base_us / ours_us:.3f}"),
        ("Kafka records per event (in + out)", "2", f"{ours['records_per_event']:.2f}", ""),
        ("peak RSS MB", f"{base['peak_rss_mb']:,.0f}", f"{ours['peak_rss_mb']:,.0f}", ""),
    ]
    for label, phase in latency.items():
        paced_us = phase["cpu_per_event_us"]
        rows += [
            (f"latency p50 / p99 ms ({label} rate, {phase['rate']:,.0f}/s)", "-",
             f"{phase['p50_ms']} / {phase['p99_ms']}", ""),
            (f"CPU µs per paced event ({label} rate)", "-", f"{paced_us:,.0f}",
             f"{paced_us / ours_us:.2f}x bulk"),
        ]
    say()
    say(f"Machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable by this "
        "process); CPU is each process's own (the broker's is not counted)")
    header = ("", "baseline (raw aiokafka)", "ours (cjo worker)", "ours/baseline")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        say("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                      for i, cell in enumerate(row)))
    say(f"Ours: {ours['events']:,} events (+{ours['events_in'] - ours['events']} before the first "
        f"sample) made {ours['inputs']:,} profile inputs; wall time {ours['seconds']:.1f}s, "
        f"CPU {ours['cpu_seconds']:.1f}s. Baseline: wall {base['seconds']:.1f}s, "
        f"CPU {base['cpu_seconds']:.1f}s.")
    written = ", ".join(f"{name} {count:,}" for name, count in ours["written"].items() if count)
    say(f"Records the worker wrote: {written}; it read the events and the profile inputs.")
    for label, phase in latency.items():
        say(f"Latency at {label} rate: {phase['events']:,} events in {phase['seconds']:.1f}s, "
            f"{phase['with_output']:,} had a journey transition or segment change; max "
            f"{phase['max_ms']} ms; the worker was busy {phase['worker_busy']:.0%} of a core "
            f"({phase['cpu_per_event_us']:,.0f} µs CPU per paced event until it applied the "
            f"last, {phase['cpu_per_event_to_commit_us']:,.0f} µs until caught up, its commit "
            "included); of that latency, "
            "produce -> profile input (the identity step) p50 / p99 "
            f"{phase['first_hop_p50_ms']} / {phase['first_hop_p99_ms']} ms; the paced producer's "
            f"send -> acknowledgement p50 / p99 {phase['ack_p50_ms']} / {phase['ack_p99_ms']} ms; "
            f"{phase['snapshots']} partition snapshot(s) written meanwhile.")
    if restore:
        records, cold, warm = restore["records"], restore["cold_ready_s"], restore["warm_ready_s"]
        say(f"Restore: {records:,} records in the profiles changelog. Without the RocksDB "
            f"directory the worker was ready after {cold:.1f}s (caught up after "
            f"{restore['cold_s']:.1f}s); with it after {warm:.1f}s ({restore['warm_s']:.1f}s).")
        say(f"  {records / cold:,.0f} records/s restored counting the startup"
            + (f", {records / (cold - warm):,.0f} records/s without it" if cold > warm else ""))


def summary(base: dict, ours: dict, latency: dict, restore: dict | None = None) -> dict:
    """The run's figures as one flat JSON object (`--json`): what a script compares between
    runs. `ratio` is the worker's events/s per core over the raw loop's (the raw loop's CPU per
    event over ours)."""
    base_us, ours_us = per_event_us(base), per_event_us(ours)
    half, quarter = latency["half"], latency["quarter"]
    figures = {
        "ratio": round(base_us / ours_us, 4),
        "worker_us_per_event": round(ours_us, 1),
        "raw_us_per_event": round(base_us, 1),
        "events_per_s": round(events_per_s(ours), 1),
        "raw_events_per_s": round(events_per_s(base), 1),
        "records_per_event": round(ours["records_per_event"], 3),
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "raw_peak_rss_mb": round(base["peak_rss_mb"], 1),
        "events": ours["events"],
    }
    for label, phase in (("half", half), ("quarter", quarter)):
        figures.update({
            f"rate_{label}": round(phase["rate"], 1),
            f"p50_ms_{label}_rate": phase["p50_ms"],
            f"p99_ms_{label}_rate": phase["p99_ms"],
            f"max_ms_{label}_rate": phase["max_ms"],
            f"first_hop_p99_ms_{label}_rate": phase["first_hop_p99_ms"],
            f"ack_p99_ms_{label}_rate": phase["ack_p99_ms"],
            f"paced_us_per_event_{label}_rate": round(phase["cpu_per_event_us"], 1),
            f"paced_us_per_event_to_commit_{label}_rate": round(
                phase["cpu_per_event_to_commit_us"], 1),
            f"busy_{label}_rate": round(phase["worker_busy"], 3),
        })
    if restore:
        figures["restore_records_per_s"] = round(restore["records"] / restore["cold_ready_s"], 1)
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000,
                        help="events produced, all consumed by the baseline (default 100,000)")
    parser.add_argument("--worker-events", type=int, default=None,
                        help="of these, the last ones our worker processes (default: all)")
    parser.add_argument("--profiles", type=int, default=100_000,
                        help="about how many profiles the events reach (default 100,000)")
    parser.add_argument("--latency-seconds", type=float, default=20.0,
                        help="how long events are sent at half our rate (default 20)")
    parser.add_argument("--latency-rate", type=float, default=None,
                        help="events/s of the latency phase (default: half of ours); the "
                             "second phase runs at half of it")
    parser.add_argument("--quarter-seconds", type=float, default=10.0,
                        help="how long events are sent at a quarter of our rate (default 10)")
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="how long the caught-up worker's CPU is measured with nothing to "
                             "read (default 10; 0: not measured)")
    parser.add_argument("--rules", action="store_true",
                        help="add issue 20's sending rules to the definitions (RULES: a time "
                             "zone, frequency caps, quiet hours)")
    parser.add_argument("--json", action="store_true",
                        help="print the figures as one JSON object, on the last line")
    parser.add_argument("--restore", action="store_true",
                        help="also time a worker restoring its tables from the changelogs")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (broker data, worker logs)")
    parser.add_argument("--baseline-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_child:
        spec = json.loads(args.baseline_child)
        print(json.dumps(asyncio.run(baseline_loop(**spec))), flush=True)
        return 0
    worker_events = args.events if args.worker_events is None else args.worker_events
    if min(args.events, worker_events, args.profiles) < 1:
        parser.error("--events, --worker-events and --profiles must be positive")
    # aiokafka logs its retries while new topics get their leaders; they are not news here.
    logging.basicConfig()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
