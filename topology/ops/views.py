"""The worker's web views for ops (the README shows each with curl). All but /health, /ready and
/metrics need a bearer token (topology.ops.web_access); POST needs an admin one.

    GET  /health                    liveness
    GET  /ready                     rebalance done, tables recovered, definitions, broker
    GET  /metrics                   Prometheus text format
    GET  /profiles/{id}             the profile, answered by the worker that owns it
    GET  /journeys                  every journey: versions, stages, live and sidecar counts
    GET  /journeys/{id}             one journey: per stage and step
    GET  /journeys/{id}/funnel      the funnel as a picture (HTML)
    GET  /definitions               what is applied
    POST /definitions               validate and apply a definitions file (YAML or JSON)
    GET  /stats/                    the worker's counters
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import defaultdict
from html import escape

from faust.web import View

from state.definitions import DefinitionError, to_records
from state.journey_definitions import journey_source
from topology.machinery.partitions import owned
from topology.ops import funnel_page
from topology.ops.metrics import CONTENT_TYPE
from topology.pipeline.definitions import apply_definitions

log = logging.getLogger(__name__)
# Profile fields an operator reads; the rest is the agent's bookkeeping (positions, outbox...).
# `duplicates` (re-sent events dropped) and `merge_crossings` (events applied across a merge)
# are the per-profile counts behind /stats/'s duplicate_events and merge_crossings.
PROFILE_FIELDS = ("profile_id", "first_seen", "last_seen", "counts", "last_time", "last",
                  "aggregates", "request", "segments", "deliveries", "limited", "duplicates",
                  "merge_crossings")


def profile_view(profile: dict) -> dict:
    out = {k: profile[k] for k in PROFILE_FIELDS}
    out["journeys"] = [
        {"journey": jid, "version": s["version"], "status": s["status"], "stage": s["stage"],
         "step": s["step"], "since": s["entered_at"] if s["status"] == "active" else s["left_at"],
         "waiting_until": s["due"], "runs": s["runs"], "goal_reached": s["goal_reached"]}
        for jid, s in sorted(profile["journeys"].items())]
    return out


async def _broker_reachable(settings) -> bool:
    host, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2.0)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


def _sidecar_funnels(settings) -> dict:
    try:
        return json.loads(settings.funnels_file.read_text())
    except (FileNotFoundError, ValueError):
        return {"computed_at": None, "journeys": [], "steps": []}


def _sidecar_journey(funnels: dict, jid: str, version: int, key: str = "journeys") -> list:
    for rows in funnels.get(key, []):
        if rows and rows[0]["journey"] == jid and rows[0]["version"] == version:
            return rows
    return []


def missing_page(text: str) -> str:
    """The funnel page's 404: `text` says what was asked for (an id from the URL), escaped."""
    return f"<!doctype html>\n<title>Not found</title>\n<h1>{escape(text)}</h1>\n"


def requested_version(raw: str | None, latest: int) -> int:
    """The version `?version=N` asks for (`latest` without one); ValueError unless N is a
    whole number."""
    if raw is None:
        return latest
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise ValueError("version must be a whole number, as in ?version=2")
    return int(raw)


def _commit_state(app) -> dict:
    """Per input partition: the offset committed, the last read, and the offsets processed but
    not committed yet (Faust's private bookkeeping: a stuck commit shows here)."""
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return {}
    out = {}
    for tp in sorted(app.assignor.assigned_actives()):
        acked = consumer._acked.get(tp) or []
        out[f"{tp.topic}[{tp.partition}]"] = {
            "committed": consumer._committed_offset.get(tp),
            "read": consumer._read_offset.get(tp),
            "acked_first": min(acked) if acked else None, "acked": len(acked)}
    return out


def register(topology) -> None:
    app, settings = topology.app, topology.settings
    profiles, aliases = topology.tables["profiles"], topology.tables["aliases"]
    definitions = topology.definitions

    @app.page("/health")
    async def health(view, request):
        return view.json({"status": "ok"})

    @app.page("/ready")
    async def ready(view, request):
        checks = {"rebalance_done": not app.rebalancing,
                  "tables_recovered": app.tables.recovery.completed.is_set(),
                  "definitions_loaded": definitions.ready.is_set(),
                  "broker_reachable": await _broker_reachable(settings)}
        ok = all(checks.values())
        return view.json({"ready": ok, **checks, "partitions": owned(topology)},
                         status=200 if ok else 503)

    @app.page("/metrics")
    async def metrics(view, request):
        return view.bytes(topology.metrics.scrape(), content_type=CONTENT_TYPE)

    @app.page("/stats/")
    async def stats(view, request):
        return view.json({**topology.stats.as_dict(),
                          "definitions_ready": definitions.ready.is_set(),
                          "definitions": definitions.versions,
                          "commits": _commit_state(app),
                          "membership": app.membership.as_dict(),
                          "fetch": app.fetch_pacing.as_dict() if app.fetch_pacing else None,
                          # batches of our own profile inputs applied without a fetch
                          "hand_offs": app.batches.hand_offs,
                          "rocksdb_memory": topology.rocksdb_memory.usage(),
                          "native_memory": topology.native_memory.usage()})

    @app.page("/profiles/{profile_id}")
    @app.table_route(table=profiles, match_info="profile_id")
    async def profile(view, request, profile_id):
        cached, found = topology.profile_cache.lookup(profile_id)  # not yet written
        if not cached:
            found = profiles.get(profile_id)
        if found is not None and found["merged_into"]:
            return view.json({"profile_id": profile_id, "merged_into": found["merged_into"],
                              "see": f"/profiles/{found['merged_into']}"})
        if found is not None:
            return view.json(profile_view(found))
        alias = aliases.get(profile_id)  # a visitor identified before it had a profile
        if alias and alias["entries"]:
            member = alias["entries"][-1]["member"]
            return view.json({"profile_id": profile_id, "merged_into": member,
                              "see": f"/profiles/{member}"})
        return view.json({"error": f"no profile with id {profile_id!r}"}, status=404)

    async def live_counts(request) -> dict:
        """Profiles in each journey position, summed over every worker that owns partitions
        (each answers for its own; `complete` when all have counted theirs)."""
        hosts = set(app.router.table_metadata(profiles.name)) - {str(app.conf.canonical_url)}
        mine = topology.journey_counts.totals()
        answers, complete = [mine], mine["complete"]
        headers = {"Authorization": request.headers.get("Authorization", "")}
        for host in sorted(hosts):
            try:
                async with app.http_client.get(f"{host}/internal/journey-counts",
                                               headers=headers, timeout=5) as response:
                    answers.append(await response.json())
            except Exception as exc:  # a worker going away: say the counts are partial
                log.warning("journey counts from %s: %r", host, exc)
                complete = False
        total: dict = defaultdict(int)
        for answer in answers:
            complete = complete and answer["complete"]
            for p in answer["positions"]:
                total[(p["journey"], p["version"], p["stage"], p["step"])] += p["profiles"]
        return {"complete": complete, "workers": len(answers), "positions": total}

    @app.page("/internal/journey-counts")
    async def own_counts(view, request):
        return view.json(topology.journey_counts.totals())

    def describe(jid: str, live: dict, funnels: dict, detail: bool) -> dict:
        versions = definitions.current.journey_versions.get(jid, {})
        latest = max(versions)
        out = {"journey": jid, "latest_version": latest, "versions": []}
        for number, journey in sorted(versions.items()):
            here = {k[2:]: n for k, n in live["positions"].items() if k[:2] == (jid, number)}
            by_stage: dict = defaultdict(int)
            for (stage, _), n in here.items():
                by_stage[stage] += n
            entry = {"version": number, "stages": [s.id for s in journey.stages],
                     "live": {"in_stage": {s.id: by_stage.get(s.id, 0) for s in journey.stages},
                              "complete": live["complete"]},
                     "sidecar": {"computed_at": funnels.get("computed_at"),
                                 "funnel": _sidecar_journey(funnels, jid, number)}}
            if detail:
                entry["definition"] = journey_source(journey)
                entry["live"]["in_step"] = [{"stage": st, "step": sp, "profiles": n}
                                            for (st, sp), n in sorted(here.items())]
                entry["sidecar"]["in_step"] = _sidecar_journey(funnels, jid, number, "steps")
            out["versions"].append(entry)
        return out

    @app.page("/journeys")
    async def journeys(view, request):
        live, funnels = await live_counts(request), _sidecar_funnels(settings)
        return view.json({"journeys": [describe(j, live, funnels, False)
                                       for j in sorted(definitions.current.journey_versions)]})

    @app.page("/journeys/{journey_id}")
    async def journey(view, request, journey_id):
        if journey_id not in definitions.current.journey_versions:
            return view.json({"error": f"no journey with id {journey_id!r}"}, status=404)
        live, funnels = await live_counts(request), _sidecar_funnels(settings)
        return view.json(describe(journey_id, live, funnels, True))

    @app.page("/journeys/{journey_id}/funnel")
    async def funnel(view, request, journey_id):
        versions = definitions.current.journey_versions.get(journey_id)
        if not versions:
            return view.html(missing_page(f"No journey {journey_id!r}"), status=404)
        try:
            number = requested_version(request.query.get("version"), max(versions))
        except ValueError as exc:
            return view.json({"error": str(exc)}, status=400)
        if number not in versions:
            return view.html(missing_page(f"Journey {journey_id!r} has no version {number}"),
                             status=404)
        live, funnels = await live_counts(request), _sidecar_funnels(settings)
        stage_ids = [s.id for s in versions[number].stages]
        in_stage = {s: sum(n for k, n in live["positions"].items()
                           if k[:3] == (journey_id, number, s)) for s in stage_ids}
        return view.html(funnel_page.render(
            journey_id, number, _sidecar_journey(funnels, journey_id, number),
            funnels.get("computed_at"), in_stage, live["complete"]))

    @app.page("/definitions")
    class Definitions(View):
        async def get(self, request):
            current = definitions.current
            return self.json({"versions": definitions.versions,
                              "definitions": [{"key": k, "body": b}
                                              for k, b in to_records(current,
                                                                     all_versions=True)]})

        async def post(self, request):
            text = await request.text()
            try:
                applied = await apply_definitions(settings, text)
            except DefinitionError as exc:
                return self.json({"errors": [{"path": p, "problem": m} for p, m in exc.errors]},
                                 status=422)
            return self.json({"applied": [{"key": k, "version": v} for k, v in applied],
                              "unchanged": not applied})
