"""The report's HTML: one page, inline CSS and JavaScript only (no CDN, no font or script from a network), laid out
for a laptop screen (max 1400 px wide, tables scroll sideways, gallery thumbnails 240 px high)."""
from __future__ import annotations

import datetime as dt
import math
from html import escape
from typing import Any, Sequence

import pandas as pd

from adbench_dbt.compare import Difference
from adbench_dbt.report.rows import Row

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:12px 20px;
color:#222;background:#fff;font-size:14px}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:22px 0 8px;border-bottom:1px solid #ddd}
.note{color:#555;font-size:12.5px;max-width:1100px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px}td,th{border:1px solid #ddd;padding:3px 7px;white-space:nowrap}
th{background:#f3f3f3;position:sticky;top:0}tr.best td{background:#eef7ee}tr.tied td{background:#f6fbf6}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
.plots figure{margin:0}.plots img{width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:12.5px;color:#444}
.gallery td{vertical-align:top;text-align:center}.gallery img{height:240px;width:auto;display:block}
.gallery .sid{font-family:monospace;font-size:11.5px;min-width:150px;max-width:170px;white-space:normal;
word-break:break-all;text-align:left}.gallery .cap{font-size:11.5px;color:#444}
"""

SORT_JS = """
function sortGallery(key){
  const body=document.querySelector('#gallery tbody');
  const rows=Array.from(body.rows);
  rows.sort((a,b)=>{
    if(key==='id'){return a.dataset.id.localeCompare(b.dataset.id);}
    const x=parseFloat(a.dataset[key]), y=parseFloat(b.dataset[key]);
    return (isNaN(y)?-1:y)-(isNaN(x)?-1:x);
  });
  rows.forEach(r=>body.appendChild(r));
}
"""

BOARD_COLUMNS = [
    ("method", "method", None), ("variant", "variant", None), ("profile", "profile", None),
    ("pixel AUROC [95% CI]", "auroc", "ci"), ("pixel AP", "ap", 4), ("breast AUROC [95% CI]", "auroc_breast", "ci"),
    ("in/out", "inout_ratio", 2), ("AUPRO@0.3 [95% CI]", "aupro", "ci"), ("hit rate [95% CI]", "hit_rate", "ci"),
    ("sens@2FP (all)", "sens_2fp_all", 3), ("mean sens 1-4FP (pos.)", "mean_sens_positive", 3),
    ("vs best", "vs_best", None), ("ms/patch", "ms_per_patch", 3), ("s/slice", "s_per_slice", 2),
    ("slices", "slices", None),
]


def _num(value: Any, digits: int = 3) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else escape(str(value))


def _board(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h, _, _ in BOARD_COLUMNS)
    body = []
    for r in table.to_dict("records"):
        cells = []
        for _, key, fmt in BOARD_COLUMNS:
            if fmt == "ci":
                cells.append(f"{_num(r[key])} [{_num(r[key + '_low'])}, {_num(r[key + '_high'])}]")
            elif isinstance(fmt, int):
                cells.append(_num(r[key], fmt))
            else:
                cells.append(_num(r[key]) if r[key] is not None else "")
        mark = str(r.get("vs_best") or "")
        body.append(f'<tr class="{escape(mark)}" data-method="{escape(str(r["method"]))}">'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<div class="scroll"><table id="leaderboard"><thead><tr>{head}</tr></thead><tbody>' \
           + "".join(body) + "</tbody></table></div>"


def _comparisons(rows: Sequence[Row], comparisons: list[dict]) -> str:
    if not comparisons:
        return "<p class='note'>Only one row: nothing to compare.</p>"
    head = "<tr><th>row</th>" + "".join(f"<th>Δ {m} [95% CI]</th><th>p</th>" for m in ("auroc", "ap", "aupro")) \
        + "</tr>"
    body = []
    for item in comparisons:
        diffs: list[Difference] = item["diffs"]
        cells = "".join(f"<td>{_num(d.difference, 4)} [{_num(d.low, 4)}, {_num(d.high, 4)}]</td>"
                        f"<td>{_num(d.p_value, 3)}</td>" for d in diffs)
        body.append(f"<tr><td>{escape(item['name'])}</td>{cells}</tr>")
    return (f"<p class='note'>Each row minus the best row ({escape(rows[0].name)}): paired bootstrap over slices "
            "(the same resampled slices for both, 2000 resamples), 95% percentile CI, two-sided p. The same as "
            "<code>adbench compare RUN RUN_BEST</code>.</p>"
            f"<div class='scroll'><table>{head}{''.join(body)}</table></div>")


def _gallery(rows: Sequence[Row], gallery: list[dict]) -> str:
    head = "<tr><th>slice</th><th>image + boxes</th>" + "".join(f"<th>{escape(r.name)}</th>" for r in rows) + "</tr>"
    body = []
    for item in gallery:
        data = " ".join(f'data-a{k}="{a:.6f}"' for k, a in enumerate(item["aurocs"]))
        mean = sum(a for a in item["aurocs"] if a == a) / max(1, sum(1 for a in item["aurocs"] if a == a))
        captions = [f'{item["boxes"]} box(es)'] + [f"AUROC {_num(a)}" for a in item["aurocs"]]
        cells = "".join(f'<td><img src="{escape(p)}" alt="{escape(item["id"])}" loading="lazy">'
                        f'<div class="cap">{c}</div></td>' for p, c in zip(item["images"], captions))
        body.append(f'<tr data-id="{escape(item["id"])}" data-mean="{mean:.6f}" {data}>'
                    f'<td class="sid">{escape(item["id"])}</td>{cells}</tr>')
    options = "".join(f'<option value="a{k}">AUROC of {escape(r.name)}</option>' for k, r in enumerate(rows))
    return ("<p class='note'>Every test slice: the slice with its boxes (green), then each row's heatmap over it. "
            "Each row has one colour scale for all slices (its 1st to 99.9th percentile, inferno), so a slice can "
            "be compared with another; rows have different units. Sort by: "
            "<select onchange='sortGallery(this.value)'><option value='id'>slice id</option>"
            f"<option value='mean'>mean AUROC over rows</option>{options}</select></p>"
            f"<div class='scroll'><table class='gallery' id='gallery'><thead>{head}</thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


def render_page(*, dataset: str, fingerprint: str, rows: Sequence[Row], board: pd.DataFrame,
                comparisons: list[dict], plots: dict[str, str], no_speed: list[str], gallery: list[dict]) -> str:
    figures = "".join(f'<figure><img src="{escape(src)}" alt="{escape(title)}"><figcaption>{escape(title)}'
                      "</figcaption></figure>" for title, src in plots.items())
    speed_note = (f"<p class='note'>Not in the speed plot (no windows, hence no ms/patch): "
                  f"{escape(', '.join(no_speed))}.</p>" if no_speed else "")
    slices = len(rows[0].records) if rows else 0
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>adbench-dbt report: {escape(dataset)}</title><style>{CSS}</style><script>{SORT_JS}</script></head>
<body>
<h1>adbench-dbt report: {escape(dataset)}</h1>
<p class="note">Split fingerprint <code>{escape(fingerprint[:16])}</code> · {slices} test slices · {len(rows)} rows
(newest run of each method and profile on this fingerprint) · generated {dt.date.today().isoformat()} by
<code>adbench report</code>. Phantom datasets check the machinery; they are not clinical results.</p>
<h2>Leaderboard</h2>
<p class="note">Means over slices with bootstrap 95% CIs over slices. Detection figures follow the official DBTex rule
(only scored slices carry marks). <em>vs best</em>: <code>tied</code> = pixel AUROC not distinguishable from the best
row at 95% (paired bootstrap over slices).</p>
{_board(board)}
<h2>Is a row better than the best?</h2>
{_comparisons(rows, comparisons)}
<h2>Curves and distributions</h2>
<div class="plots">{figures}</div>
{speed_note}
<h2>Gallery</h2>
{_gallery(rows, gallery)}
</body></html>
"""
