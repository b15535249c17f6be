"""The per-class part of the report index: the headline split's precision, recall and F1 per
class, from the metrics file or the rendered ``03_evaluate.html``, drawn as an inline SVG chart.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

from fer.config import CLASSES

esc = html.escape


def per_class_from_report(page: str | os.PathLike) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {class: {"precision", "recall", "f1-score", "support"}}}`` from the "Per class"
    tables of a rendered ``03_evaluate.html`` (the notebook's ``evaluate.per_class_table``)."""
    text = Path(page).read_text(encoding="utf-8")
    start = text.find('<h2 id="Per-class"')
    end = text.find("<h2", start + 1)
    section = "" if start < 0 else text[start:] if end < 0 else text[start:end]
    found = {}
    for table in re.findall(r"<table.*?</table>", section, re.S):
        rows = [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
                for r in re.findall(r"<tr.*?</tr>", table, re.S)]
        caption = re.search(r"<caption>(.*?)</caption>", table, re.S)
        if not caption or len(rows) < 2:
            continue
        columns = rows[0][1:]
        try:
            found[caption.group(1).strip()] = {r[0]: dict(zip(columns, map(float, r[1:]), strict=True)) for r in rows[1:]}
        except ValueError:  # not the table of numbers this expects
            continue
    return found


def per_class(metrics: dict[str, Any], html_dir: Path) -> tuple[dict[str, dict[str, float]], str] | None:
    """The headline split's per-class table and where it came from, or None.

    ``evaluate.per_class`` in the metrics wins; otherwise the table the rendered 03 report shows,
    used only while its macro-F1 is the metrics' (to its 3 decimals): a report rendered from
    another evaluation than the metrics file's is not mixed in.
    """
    ev = metrics.get("evaluate", {})
    split = ev.get("headline_split") or next(iter(ev.get("splits", {})), None)
    if split is None:
        return None
    table, source = ev.get("per_class", {}).get(split), f"reports/metrics ({split})"
    if table is None and (html_dir / "03_evaluate.html").exists():
        table, source = per_class_from_report(html_dir / "03_evaluate.html").get(split), "03_evaluate.html"
        macro = (table or {}).get("macro avg", {}).get("f1-score")
        if macro is None or abs(macro - ev["splits"][split].get("macro_f1", -1)) > 5e-4:
            return None
    if not table or not all(c in table for c in CLASSES):
        return None
    return {c: table[c] for c in CLASSES}, source


def per_class_svg(table: dict[str, dict[str, float]], accuracy: float | None = None) -> str:
    """A horizontal bar chart, two bars a class (recall = the class's accuracy, and F1), as SVG."""
    left, bar_w, row, bar_h, top = 100, 320, 42, 15, 36
    height = top + row * len(table) + 26
    parts = [f'<svg class="chart" viewBox="0 0 {left + bar_w + 44} {height}" role="img" '
             f'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">',
             '<title id="chart-title">Per-class recall and F1</title>',
             f'<rect x="{left}" y="6" width="12" height="12" class="recall"/><text x="{left + 18}" y="17">recall</text>',
             f'<rect x="{left + 90}" y="6" width="12" height="12" class="f1"/><text x="{left + 108}" y="17">F1</text>',
             f'<line x1="{left + 160}" y1="12" x2="{left + 180}" y2="12" class="overall"/>'
             f'<text x="{left + 186}" y="17">overall accuracy</text>']
    for tick in (0, 0.25, 0.5, 0.75, 1):
        x = left + bar_w * tick
        parts.append(f'<line x1="{x:.0f}" y1="{top - 6}" x2="{x:.0f}" y2="{height - 22}" class="grid"/>'
                     f'<text x="{x:.0f}" y="{height - 8}" text-anchor="middle" class="tick">{tick:.0%}</text>')
    if accuracy is not None:
        x = left + bar_w * accuracy
        parts.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 22}" class="overall">'
                     f'<title>overall accuracy {accuracy:.3f}</title></line>')
    for i, (name, m) in enumerate(table.items()):
        y = top + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" class="cls">{esc(name)}</text>'
                     f'<text x="{left - 8}" y="{y + 30}" text-anchor="end" class="tick">{int(m["support"]):,} faces</text>')
        for j, (key, cls) in enumerate((("recall", "recall"), ("f1-score", "f1"))):
            w, by = bar_w * m[key], y + j * (bar_h + 2)
            parts.append(f'<rect x="{left}" y="{by}" width="{w:.1f}" height="{bar_h}" class="{cls}">'
                         f'<title>{esc(name)} {key} {m[key]:.3f}</title></rect>'
                         f'<text x="{left + w + 4:.1f}" y="{by + 12}" class="val">{m[key]:.2f}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
