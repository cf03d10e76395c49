"""A self-contained HTML report of a key-compromise audit: one file, inline CSS and an
inline SVG timeline of the key's activity with the compromise point; no scripts, fonts
or images from anywhere else. It opens with its provenance (the signed checkpoint it is
proven against, the tool, when it was made) and the tags that already lost trust, and
carries the evidence that ``trustlog proof verify REPORT.html`` checks
(:mod:`trustlog.cli.audit_evidence`)."""
from __future__ import annotations

import html
from datetime import datetime, timezone

from trustlog.services.audit import AuditEvent, AuditReport

from .safe import plain

MAX_ROWS = 2000


def _t(ns: int | None) -> str:
    if ns is None:
        return "—"
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _e(x: object) -> str:
    return html.escape("" if x is None else plain(x), quote=True)


def timeline_svg(report: AuditReport, width: int = 960, height: int = 240, buckets: int = 60) -> str:
    """Stacked bars per time bucket (signed before / signed after / under fallen
    delegations), markers for delegations the key made, a line at ``since``."""
    events = report.signed + report.delegated + report.granted
    times = [e.log_time for e in events] + ([report.since] if report.since else [])
    pad_l, pad_r, pad_t, pad_b = 50, 20, 30, 50
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="activity of the key over log time">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    if not times:
        parts.append(f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" fill="#666">'
                     'no activity of this key in the log</text></svg>')
        return "".join(parts)
    lo, hi = min(times), max(times)
    if hi == lo:
        hi = lo + 1
    span = hi - lo

    def x(t: int) -> float:
        return pad_l + (t - lo) / span * w

    def bucket(t: int) -> int:
        return min(buckets - 1, int((t - lo) / span * buckets))

    series = {"before": [0] * buckets, "after": [0] * buckets, "delegated": [0] * buckets}
    for e in report.signed:
        series["after" if e.after else "before"][bucket(e.log_time)] += 1
    for e in report.delegated:
        series["delegated"][bucket(e.log_time)] += 1
    peak = max(1, max(a + b + c for a, b, c in zip(*series.values())))
    colors = {"before": "#4a78c2", "after": "#d0342c", "delegated": "#f0a030"}
    bw = w / buckets
    for i in range(buckets):
        y0 = pad_t + h
        for name in ("before", "after", "delegated"):
            n = series[name][i]
            if not n:
                continue
            bh = n / peak * h
            y0 -= bh
            t0 = lo + span * i / buckets
            parts.append(f'<rect x="{pad_l + i * bw + 1:.1f}" y="{y0:.1f}" width="{max(bw - 2, 1):.1f}" '
                         f'height="{bh:.1f}" fill="{colors[name]}"><title>{_e(name)}: {n} events from '
                         f'{_e(_t(int(t0)))}</title></rect>')
    # axes
    parts.append(f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#333"/>')
    parts.append(f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#333"/>')
    parts.append(f'<text x="{pad_l - 6}" y="{pad_t + 4}" text-anchor="end" font-size="11">{peak}</text>')
    parts.append(f'<text x="{pad_l - 6}" y="{pad_t + h}" text-anchor="end" font-size="11">0</text>')
    short = span < 120 * 1_000_000_000  # under two minutes: label the time of day, to the millisecond
    for k in range(5):
        t = lo + span * k // 4
        label = _t(t)[11:23] if short else _t(t)[:19]
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"  # keep the outer labels inside
        parts.append(f'<text x="{x(t):.1f}" y="{pad_t + h + 16}" text-anchor="{anchor}" font-size="10">'
                     f'{_e(label)}</text>')
    # delegations the key made (direct fallen grants) and grants it received
    for g in report.fallen_grants:
        if g.direct:
            cx = x(g.log_time)
            parts.append(f'<path d="M{cx:.1f},{pad_t + h + 22} l-5,9 l10,0 z" fill="#8a2be2">'
                         f'<title>{_e(g.role)} keys set by this key at offset {g.offset} ({_e(g.repo)})</title></path>')
    for e in report.granted:
        cx = x(e.log_time)
        parts.append(f'<circle cx="{cx:.1f}" cy="{pad_t + h + 27}" r="4" fill="#2a9d55">'
                     f'<title>key given authority at offset {e.offset} ({_e(e.repo)} {_e(e.role)})</title></circle>')
    if report.since:
        sx = x(report.since)
        parts.append(f'<line x1="{sx:.1f}" y1="{pad_t - 8}" x2="{sx:.1f}" y2="{pad_t + h}" stroke="#d0342c" '
                     'stroke-width="2" stroke-dasharray="6,4"/>')
        parts.append(f'<text x="{sx:.1f}" y="{pad_t - 12}" text-anchor="middle" font-size="12" fill="#d0342c">'
                     f'compromised since {_e(_t(report.since))}</text>')
    # legend
    lx = pad_l
    for label, color in (("signed before", colors["before"]), ("signed after", colors["after"]),
                         ("under fallen delegations", colors["delegated"]), ("delegation made", "#8a2be2"),
                         ("authority received", "#2a9d55")):
        parts.append(f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{lx + 14}" y="{height - 3}" font-size="11">{_e(label)}</text>')
        lx += 30 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def _rows(events: list[AuditEvent]) -> str:
    """Table rows of cited events: ``data-offset`` and ``data-f`` name what each cell
    claims, so `proof verify` can hold the visible cells to the embedded records."""
    out = []
    for e in events[:MAX_ROWS]:
        cls = "after" if e.after else "before"
        out.append(f'<tr class="{cls}" data-offset="{e.offset}"><td>{e.offset}</td><td>{_e(_t(e.log_time))}</td>'
                   f'<td data-f="repo">{_e(e.repo)}</td><td data-f="kind">{_e(e.kind)}</td>'
                   f'<td data-f="role">{_e(e.role)}</td><td data-f="tag">{_e(e.tag)}</td>'
                   f'<td>{"after" if e.after else "before"}</td><td class="mono" data-f="digest">{_e(e.digest)}</td></tr>')
    more = len(events) - MAX_ROWS
    if more > 0:
        out.append(f'<tr><td colspan="8">… {more} more (see the JSON report)</td></tr>')
    return "".join(out)


_HEAD = ("<tr><th>offset</th><th>log time</th><th>repository</th><th>event</th><th>role</th><th>tag</th>"
         "<th>vs since</th><th>digest</th></tr>")


def _table(head: str, rows: str) -> str:
    """A table, or "None." when it has no rows (a header alone reads like a rendering fault)."""
    return f"<table>{head}{rows}</table>" if rows else "<p>None.</p>"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;overflow-x:auto}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top;white-space:nowrap}
td.wrap{white-space:normal;min-width:18em}
th{background:#f4f4f4}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
tr.after td{background:#fdeeee}.num{text-align:right}.ok{color:#2a9d55}.bad{color:#d0342c;font-weight:600}
.card{display:inline-block;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:.3em;min-width:9em}
.card b{display:block;font-size:1.5em}
table.provenance{display:table}table.provenance th{width:14em}.note{color:#555;font-size:.85em}
.lost h2,h2.lost{color:#d0342c}
"""


def _repo_table(report: AuditReport) -> str:
    """Every repository the key appears in, one row each, with the compromise the log
    already records there."""
    rows = "".join(
        f"<tr><td>{i}</td><td>{_e(r)}</td><td>{_e(_t(report.already_reported[r])) if r in report.already_reported else '—'}"
        f"</td></tr>" for i, r in enumerate(report.repos[:MAX_ROWS], 1))
    return (f"<h2>Repositories where the key appears ({len(report.repos)})</h2><table><tr><th>#</th>"
            f"<th>repository</th><th>the log reports it compromised since (UTC)</th></tr>{rows}</table>")


def _lost_table(lost: list[dict]) -> str:
    from collections import Counter

    rows = "".join(
        f'<tr data-offset="{x["offset"]}"><td>{x["offset"]}</td><td data-f="repo">{_e(x["repo"])}</td>'
        f'<td data-f="tag">{_e(x["tag"])}</td><td class=bad title="{_e(x["reason"])}">{_e(x["code"])}</td>'
        f'<td class="mono" data-f="digest">{_e(x["digest"])}</td></tr>' for x in lost[:MAX_ROWS])
    more = f'<tr><td colspan="5">… {len(lost) - MAX_ROWS} more (see the JSON report)</td></tr>' if len(lost) > MAX_ROWS else ""
    why = "; ".join(f"{_e(r)} ({n})" for r, n in Counter(x["reason"] for x in lost).most_common())
    return (f'<h2 class="lost">Tags that already lost trust ({len(lost)})</h2>'
            + (f"<p>The log already reports this key compromised; these current tags fail now. Why: {why}.</p>"
               f"<table><tr><th>offset</th><th>repository</th><th>tag</th><th>verdict now</th><th>digest</th></tr>"
               f"{rows}{more}</table>" if lost else "<p>None.</p>"))


def render_html(report: AuditReport, *, log_dir: str = "", evidence: dict | None = None,
                lost: list[dict] | None = None) -> str:
    """The report. ``evidence`` (:func:`trustlog.cli.audit_evidence.build_evidence`)
    adds the provenance block and the embedded proofs; ``lost``: the current tags that
    already fail because the log reports the key compromised."""
    from .audit_evidence import evidence_script, provenance_html

    lost = lost or []
    s = report.summary()
    cards = [("tags that already lost trust", len(lost)), ("current verdicts that would change", s["verdict_changes"]),
             ("blast radius (events)", s["blast_radius"]), ("signed (all)", s["signed"]),
             ("signed before since", s["signed_before"]), ("signed at/after since", s["signed_after"]),
             ("delegations made after since", s["delegations_after"]),
             ("events under fallen grants", s["delegated_events"]), ("repositories", s["repositories"])]
    grants = "".join(
        f"<tr><td>{_e(g.repo)}</td><td>{_e(g.role)}</td><td>{g.grant_id}</td><td>{g.offset}</td>"
        f"<td>{_e(_t(g.log_time))}</td><td class=mono>{_e(', '.join(k[:16] + '…' for k in g.keyids))}</td>"
        f"<td>{'made by this key' if g.direct else 'beneath one'}</td></tr>" for g in report.fallen_grants[:MAX_ROWS])
    changes = "".join(
        f"<tr><td>{_e(v.repo)}</td><td>{_e(v.tag)}</td><td class=mono>{_e(v.digest)}</td>"
        f"<td class=ok>{_e(v.before)}</td><td class=bad>{_e(v.after)}</td><td class=wrap>{_e(v.reason)}</td></tr>"
        for v in report.verdict_changes[:MAX_ROWS])
    since = "the key's whole history" if report.since is None else _t(report.since)
    ref = _t(report.ref_time * 1_000_000_000)
    prov = provenance_html(evidence) if evidence else "<p>(no provenance: rendered without the log)</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>trustlog key audit {_e(report.keyid[:16])}</title><style>{_CSS}</style></head><body>
<h1>Key compromise audit</h1>
<p>Key <span class="mono">{_e(report.keyid)}</span><br>
Compromised since: <b>{_e(since)}</b> (log time, UTC)<br>
Log: {_e(log_dir)}; verdicts judged at reference time {_e(ref)}.</p>
<h2>Provenance</h2>
{prov}
<div>{''.join(f'<div class="card"><b>{v}</b>{_e(k)}</div>' for k, v in cards)}</div>
{_lost_table(lost)}
<h2>Current verdicts that would change if the key is reported compromised since then ({len(report.verdict_changes)})</h2>
{"<table><tr><th>repository</th><th>tag</th><th>digest</th><th>now</th><th>would be</th><th>why</th></tr>" + changes + "</table>"
 if report.verdict_changes else "<p>None" + (": the log already reports the key compromised at least this early." if report.already_reported else ".") + "</p>"}
<h2>Activity over log time</h2>
{timeline_svg(report)}
{_repo_table(report)}
<h2>Grants that fall ({len(report.fallen_grants)})</h2>
{_table("<tr><th>repository</th><th>role</th><th>grant</th><th>offset</th><th>log time</th><th>keys</th><th></th></tr>", grants)}
<h2>Blast radius: events signed by the key at or after since ({len(report.signed_after)})</h2>
{_table(_HEAD, _rows(report.signed_after))}
<h2>Blast radius: events signed under the fallen grants ({len(report.delegated)})</h2>
{_table(_HEAD, _rows(report.delegated))}
<h2>Signed before since — kept ({len(report.signed_before)})</h2>
{_table(_HEAD, _rows(report.signed_before))}
<h2>Events that gave the key authority ({len(report.granted)})</h2>
{_table(_HEAD, _rows(report.granted))}
<p class="note">Generated by trustlog audit. Times are UTC; log times are the log's own append times,
never a signer's claim. Self-contained: no external assets or scripts.</p>
{evidence_script(evidence) if evidence else ""}
</body></html>
"""
