"""The journey funnel as a picture a marketer reads at a glance: one HTML page with an inline
SVG (no script, no external resource), served by the worker itself.

Each stage is a bar as wide as the profiles that entered it; inside it, how many are there now,
reached its milestone, left through the stage's exit criteria, left through the journey's exit
criteria from it, and reached the goal; between two stages, the conversion (the columns are
defined in docs/sidecar.md, "Funnel columns")."""
from __future__ import annotations

from datetime import datetime, timezone
from html import escape

WIDTH, BAR_H, GAP, LEFT, BAR_MAX = 1100, 46, 34, 150, 380
COLORS = {"entered": "#3b6fb6", "in_now": "#79a8e0", "milestone": "#3f9b6e",
          "exited_stage": "#c0504d", "exited_journey": "#8e3b8c", "goal": "#d9a21b"}


def _when(ms: int | None) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(journey: str, version: int, stages: list[dict], computed_at: int | None,
           live: dict[str, int], live_complete: bool) -> str:
    """`stages`: the sidecar's funnel rows of this version; `live`: profiles in each stage now
    according to the stream, for every stage of the definition in its order (stages nobody
    reached yet are drawn empty)."""
    # A funnels file written before the exits were split has `exited` (the stage's own) only.
    stages = [{**s, "exited_stage": s.get("exited_stage", s.get("exited", 0)),
               "exited_journey": s.get("exited_journey", 0)} for s in stages]
    known = {s["stage"]: s for s in stages}
    empty = {"entered": 0, "in_now": 0, "milestone": 0, "exited_stage": 0, "exited_journey": 0,
             "to_next": 0, "goal": 0, "conversion": None}
    if stages:
        stages = [known.get(stage, {**empty, "stage": stage}) for stage in live] + \
            [s for s in stages if s["stage"] not in live]
    top = max([s["entered"] for s in stages] + [1])
    rows = []
    y = 20
    for i, s in enumerate(stages):
        width = max(2.0, BAR_MAX * s["entered"] / top)
        here = BAR_MAX * s["in_now"] / top  # the part of the bar still in the stage
        name = escape(s["stage"])
        text_x = LEFT + BAR_MAX + 14
        rows.append(
            f'<g class="stage" data-stage="{name}" data-entered="{s["entered"]}">'
            f'<text x="{LEFT - 10}" y="{y + 28}" text-anchor="end" class="name">{name}</text>'
            f'<rect x="{LEFT}" y="{y}" width="{width:.1f}" height="{BAR_H}" rx="4" '
            f'fill="{COLORS["entered"]}"/>'
            f'<rect x="{LEFT}" y="{y + BAR_H - 10}" width="{here:.1f}" height="10" '
            f'fill="{COLORS["in_now"]}"/>'
            f'<text x="{text_x}" y="{y + 19}" class="count">{s["entered"]} entered</text>'
            f'<text x="{text_x}" y="{y + 37}" class="small">'
            f'<tspan fill="{COLORS["in_now"]}">■</tspan> {s["in_now"]} here now · '
            f'<tspan fill="{COLORS["milestone"]}">■</tspan> {s["milestone"]} milestone · '
            f'<tspan fill="{COLORS["exited_stage"]}">■</tspan> {s["exited_stage"]} stage exit · '
            f'<tspan fill="{COLORS["exited_journey"]}">■</tspan> {s["exited_journey"]} '
            f'journey exit · '
            f'<tspan fill="{COLORS["goal"]}">■</tspan> {s["goal"]} goal</text></g>')
        y += BAR_H
        if i + 1 < len(stages):
            conv = s.get("conversion")
            text = "–" if conv is None else f"{conv:.0%}"
            rows.append(f'<text x="{LEFT + 8}" y="{y + 22}" class="conv" '
                        f'data-conversion="{escape(s["stage"])}">↓ {text} went on to '
                        f'{escape(stages[i + 1]["stage"])} ({s["to_next"]})</text>')
            y += GAP
    height = y + 20
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'role="img" aria-label="funnel of journey {escape(journey)}">'
           + "".join(rows) + "</svg>") if stages else \
        '<p class="empty">The sidecar has no funnel for this journey yet (run `cjo sidecar run`).</p>'
    live_rows = "".join(f'<tr><td>{escape(stage)}</td><td class="n">{n}</td></tr>'
                        for stage, n in live.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Journey {escape(journey)} v{version}: funnel</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }}
.meta {{ color: #666; margin-bottom: 16px; }}
svg .name {{ font-weight: 600; font-size: 14px; fill: #222; }}
svg .count {{ fill: #222; font-size: 14px; font-weight: 600; }}
svg .small {{ fill: #444; font-size: 12px; }}
svg .conv {{ fill: #444; font-size: 13px; }}
table {{ border-collapse: collapse; margin-top: 12px; }}
td, th {{ padding: 2px 12px 2px 0; text-align: left; }}
td.n {{ text-align: right; }}
</style></head><body>
<h1>Journey {escape(journey)} <small>v{version}</small></h1>
<div class="meta">Funnel from the sidecar's snapshot tables, computed {_when(computed_at)}.</div>
{svg}
<h2>In each stage now (live, from the stream{"" if live_complete else ", still counting"})</h2>
<table><tr><th>stage</th><th>profiles</th></tr>{live_rows}</table>
</body></html>
"""
