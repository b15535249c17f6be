"""The reports' front page, ``reports/html/index.html``: what a visitor should learn first.

Built from what the notebooks wrote, never by running them: ``reports/metrics/<profile>.json``
(the evaluated model's numbers, the models notebook 02 trained), the per-class table of the
rendered ``03_evaluate.html`` (or ``evaluate.per_class`` in the metrics, where a notebook writes
it), the model cards in ``fer/weights`` and ``fer.reporting.results.ANCHORS`` for the comparison. One
self-contained file: inline CSS, the per-class chart as inline SVG, readable on a phone.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any

from fer.config import PACKAGE_DIR, REPORTS_DIR, WEIGHTS_DIR
from fer.reporting.per_class import per_class, per_class_svg

#: FER2013's own names for the splits the metrics call public_test / private_test
SPLIT_NAMES = {"public_test": "PublicTest", "private_test": "PrivateTest"}
TRAINED_HERE = "trained by this run, not shipped"
BUNDLED = "the bundled model, not retrained by this run"
esc = html.escape


def split_name(split: str) -> str:
    return SPLIT_NAMES.get(split, split)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _ci(ci: list[float] | None, scale: float = 100, fmt: str = ".1f", unit: str = " %") -> str:
    return f"95 % CI {scale * ci[0]:{fmt}}–{scale * ci[1]:{fmt}}{unit}" if ci else ""


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def model_label(source: str | None) -> str:
    """How a model of notebook 02's ``train.models`` is labelled: trained here, or the bundled one."""
    return BUNDLED if source in ("bundled", "shipped") else TRAINED_HERE


def model_sentence(model: Any) -> str:
    """``evaluate.model`` of the metrics file in words (an older file: the sentence it stored)."""
    from fer.config import short_path

    if not isinstance(model, dict):
        return short_path(model) if model else ""
    kind = f"an ensemble of {model['members']}" if model.get("kind") == "ensemble" else "a single network"
    made = ("trained by notebook 02 in this run" if model.get("trained_in_this_run")
            else "not trained in this run: only its evaluation ran here")
    return f"{model.get('path')} ({kind}, {made})"


# --------------------------------------------------------------------------- text facts


def headline(metrics: dict[str, Any]) -> list[str]:
    """One-line facts from ``reports/metrics/<profile>.json`` (the page's captions, a log's summary)."""
    lines = []
    ev = metrics.get("evaluate", {})
    for split, m in ev.get("splits", {}).items():
        if "accuracy" in m:
            lo, hi = m.get("accuracy_ci", [float("nan")] * 2)
            lines.append(f"{split}: accuracy {100 * m['accuracy']:.1f} % (95 % CI {100 * lo:.1f}-{100 * hi:.1f}), "
                         f"macro-F1 {m['macro_f1']:.3f}, ECE {m['ece']:.3f}, {m['images']} images")
    if "unseen_public_test" in ev:
        u = ev["unseen_public_test"]
        lines.append(f"PublicTest images not in train: accuracy {100 * u['accuracy']:.1f} % on {u['images']} images")
    if "latency" in ev:
        lines.append(f"latency: {ev['latency']['ms_per_image_batch1']:.1f} ms per face alone, "
                     f"{ev['latency']['images_per_s_batched']:.0f} faces/s batched"
                     + (f" ({ev['latency']['device']})" if ev["latency"].get("device") else ""))
    if ev.get("model"):
        lines.append(f"model evaluated: {model_sentence(ev['model'])}")
    for name, m in metrics.get("train", {}).get("models", {}).items():
        trained = f"{m['epochs']} epochs in {m['wall_s'] / 60:.0f} min, " if m.get("epochs") and m.get("wall_s") else ""
        lines.append(f"{name} ({model_label(m.get('source'))}): {m.get('params', 0):,} params, {trained}"
                     f"validation accuracy {100 * m.get('val_accuracy', float('nan')):.1f} %")
    return lines


# --------------------------------------------------------------------------- the page

CSS = PACKAGE_DIR / "static" / "frontpage.css"  # inlined: the page stays one file


def _stat(value: str, label: str) -> str:
    return f'<div class="stat"><b>{value}</b><span>{label}</span></div>'


def _cards(weights_dir: Path) -> dict[str, dict[str, Any]]:
    cards = {}
    for path in sorted(weights_dir.glob("*.json"), key=lambda p: (p.stem != "main", p.stem)):
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (weights_dir / f"{path.stem}.keras").exists() and "sha256" in card:
            cards[path.stem] = card
    return cards


def _evaluated(ev: dict[str, Any], cards: dict[str, dict[str, Any]]) -> str:
    """The hero block: which model, its headline split's numbers with their intervals."""

    split = ev.get("headline_split") or next(iter(ev.get("splits", {})), None)
    if split is None or "accuracy" not in ev.get("splits", {}).get(split, {}):
        return '<section class="hero"><p>No evaluation recorded yet: run notebook 03 (<code>make reproduce</code>).</p></section>'
    m, card = ev["splits"][split], ev.get("model_card", {})
    shipped = next((f"fer/weights/{n}.keras" for n, c in cards.items() if card.get("sha256") == c.get("sha256")), None)
    what = " · ".join(str(v) for v in (card.get("name"), card.get("arch"),
                                       f"{card['params'] / 1e6:.2f} M parameters" if card.get("params") else None) if v)
    if shipped:
        tag = f'<span class="tag ship">shipped as {esc(shipped)}</span>'
    elif card.get("sha256"):  # a file no card in fer/weights describes: 02's own model, or one given by path
        tag = '<span class="tag">not a shipped model</span>'
    else:
        tag = ""
    trained = f", trained {esc(card['date'][:10])}" if card.get("date") else ""
    stats = [_stat(f"{m['macro_f1']:.3f}", f"macro-F1 (every class counts alike)<br>{_ci(m.get('macro_f1_ci'), 1, '.3f', '')}")]
    if "unseen_public_test" in ev:
        u = ev["unseen_public_test"]
        stats.append(_stat(_pct(u["accuracy"]), f"on the {u['images']:,} of {u.get('of', m['images']):,} PublicTest faces "
                           f"that never occur in train<br>{_ci(u.get('accuracy_ci'))}"))
    stats.append(_stat(f"{m['ece']:.3f}", "expected calibration error (0 = its confidence is its accuracy)"))
    tta = ev.get("tta", {}).get(split, {})
    for key, label in (("flip", "with the mirrored face averaged in"), ("tencrop", "averaged over ten crops")):
        if key in tta:
            stats.append(_stat(_pct(tta[key]["accuracy"]), f"accuracy {label} ({tta[key]['views']}× the compute)"))
    if "latency" in ev:
        lat = ev["latency"]
        stats.append(_stat(f"{lat['ms_per_image_batch1']:.1f} ms", f"per face alone, {lat['images_per_s_batched']:.0f} "
                           f"faces/s batched ({esc(str(lat.get('device', '')))}; detection not included)"))
    caption = next((line for line in headline({"evaluate": {"splits": {split: m}}})), "")
    source = esc(model_sentence(ev.get("model")))
    return f"""<section class="hero">
<p class="eyebrow">The evaluated model (notebook 03)</p>
<h2>{esc(what) or "model"} {tag}</h2>
<p class="note">Notebook 03 evaluated {source}{trained}. Details in <a href="03_evaluate.html">03 · Evaluation</a>.</p>
<div class="big"><span class="num">{_pct(m['accuracy'])}</span>
<span>accuracy on FER2013 <b>{esc(split_name(split))}</b> ({m['images']:,} faces)<br>{_ci(m.get('accuracy_ci'))}
(1,000 bootstrap resamples)</span></div>
<div class="stats">
{chr(10).join(stats)}
</div>
<p class="note">{esc(caption)}</p>
</section>"""


def _comparison(ev: dict[str, Any]) -> str:
    from fer.reporting.results import comparison_table

    split = ev.get("headline_split") or next(iter(ev.get("splits", {})), None)
    if split is None or "accuracy" not in ev.get("splits", {}).get(split, {}):
        return ""
    ours = {f"this project: {ev.get('model_card', {}).get('name', 'model')} ({split_name(split)})": ev["splits"][split]["accuracy"]}
    if "unseen_public_test" in ev:
        ours["this project, PublicTest faces not in train"] = ev["unseen_public_test"]["accuracy"]
    params = ev.get("model_card", {}).get("params")
    table = comparison_table(ours, params=f"{params / 1e6:.2f}M" if params else "", split_name=split_name(split))
    rows = []
    for model, r in table.iterrows():
        cls, name = (' class="ours"', f"<b>{esc(model)}</b>") if model in ours else ("", esc(model))
        rows.append(f'<tr{cls}><td>{name}<small>{esc(r["protocol"])}</small></td><td class="n"><span class="bar" '
                    f'style="width:{2 * (r["accuracy"] - 50):.0f}px"></span>{r["accuracy"]:.1f} %</td>'
                    f'<td>{esc(r["split"])}</td><td class="wide">{esc(str(r["params"]))}</td></tr>')
    return f"""<h2 id="comparison">Against the seed project and others</h2>
<p class="note">Protocols differ, so compare with care: PublicTest and PrivateTest are FER2013's two test splits of
3,589 faces each, and rows on one split are not measured on the other. The 2020 seed repository chose its checkpoint on
the same PublicTest it reports; the PyPI <code>fer</code> package's number is the team's own measurement on PrivateTest.
Bars start at 50 %.</p>
<div class="scroll"><table>
<thead><tr><th>model and protocol</th><th>accuracy</th><th>split</th><th class="wide">params</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></div>"""


def _per_class_section(metrics: dict[str, Any], html_dir: Path) -> str:
    ev = metrics.get("evaluate", {})
    found = per_class(metrics, html_dir)
    if found is None:
        return ""
    table, source = found
    split = ev.get("headline_split") or next(iter(ev.get("splits", {})))
    accuracy = ev["splits"][split].get("accuracy")
    rows = "\n".join(f'<tr><td>{esc(c)}</td><td class="n">{m["precision"]:.3f}</td><td class="n">{m["recall"]:.3f}</td>'
                     f'<td class="n">{m["f1-score"]:.3f}</td><td class="n">{int(m["support"]):,}</td></tr>'
                     for c, m in table.items())
    link = ('the per-class table of <a href="03_evaluate.html#Per-class">03 · Evaluation</a>'
            if source == "03_evaluate.html" else esc(source))
    ranked = sorted(table, key=lambda c: table[c]["f1-score"], reverse=True)
    easy, hard = (", ".join(f"{c} ({table[c]['f1-score']:.2f})" for c in part) for part in (ranked[:2], ranked[:-3:-1]))
    return f"""<h2 id="per-class">Per class ({esc(split_name(split))})</h2>
<p class="note">Recall is the share of a class's faces labelled correctly (its accuracy); the dashed line is the
overall accuracy. Highest F1: {esc(easy)}; lowest: {esc(hard)}. From {link}.</p>
{per_class_svg(table, accuracy)}
<details><summary>the numbers</summary><div class="scroll"><table>
<thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>faces</th></tr></thead>
<tbody>
{rows}
</tbody></table></div></details>"""


def _trained_here(metrics: dict[str, Any], profile: str) -> str:
    train = metrics.get("train", {})
    models = train.get("models", {})
    if not models:
        return ""
    if train.get("trained_in_this_run") is False:
        title, note = "The shipped models' recipe (notebook 02; nothing retrained)", (
            f"This run trained nothing (<code>train_models=False</code>): notebook 02 shows the recipe of the shipped "
            f"models, the <code>{esc(profile)}</code> profile, with their cards; their times and accuracies are those "
            "the cards recorded when they were trained. Only the evaluation above was re-run here.")
    else:
        title, note = "The recipe in this run (notebook 02)", (
            f"Notebook 02 ran the <code>{esc(profile)}</code> recipe: the members, their ensemble (evaluated above), "
            "the lite distilled from it. They stay in <code>runs/</code> and are <b>not shipped</b> unless "
            "<code>python -m fer ship</code> copies them. Validation accuracy is on the split each one trained against.")
    rows = []
    for name, m in models.items():
        took = (f"{m['epochs']} epochs, {_duration(m['wall_s'])}" if m.get("epochs") and m.get("wall_s") else "")
        acc = _pct(m["val_accuracy"]) if m.get("val_accuracy") is not None else "–"
        rows.append(f'<tr><td>{esc(name)} <span class="tag">{esc(model_label(m.get("source")))}</span></td>'
                    f'<td class="n">{m.get("params", 0):,}</td><td class="wide">{esc(took)}</td><td class="n">{acc}</td></tr>')
    return f"""<h2 id="trained">{title}</h2>
<p class="note">{note}</p>
<div class="scroll"><table>
<thead><tr><th>model</th><th>params</th><th class="wide">training</th><th>val. accuracy</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></div>"""


def _shipped(cards: dict[str, dict[str, Any]], evaluated_sha: str | None) -> str:
    if not cards:
        return ""
    rows = []
    for name, c in cards.items():
        val = c.get("metrics", {}).get("validation", {})
        split = split_name(c.get("data", {}).get("validation", ""))
        acc = f"{_pct(val['accuracy_single'])}<small>{esc(split)}</small>" if "accuracy_single" in val else "–"
        gpus = ", ".join(c.get("hardware", {}).get("gpus", [])) or c.get("hardware", {}).get("cpu", "")
        note = ' <span class="tag ship">evaluated above</span>' if c.get("sha256") == evaluated_sha else ""
        rows.append(f'<tr><td>{esc(name)}{note}<small><code>fer/weights/{esc(name)}.keras</code></small></td>'
                    f'<td class="wide">{esc(str(c.get("arch", "")))}</td><td class="n">{c.get("params", 0):,}</td>'
                    f'<td class="n">{acc}</td><td class="wide">{esc(str(c.get("date", ""))[:10])}, {esc(gpus)}</td></tr>')
    return f"""<h2 id="shipped">Shipped models</h2>
<p class="note">What <code>fer.analyze</code>, the CLI, the web app and the webcam widget load. Accuracy from each
model's card (measured when it was shipped, single view).</p>
<div class="scroll"><table>
<thead><tr><th>model</th><th class="wide">network</th><th>params</th><th>accuracy</th><th class="wide">trained</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></div>"""


def _executed_info(path: Path) -> dict[str, Any]:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    title = next((ln.lstrip("# ").strip() for c in nb.cells if c.cell_type == "markdown"
                  for ln in c.source.splitlines() if ln.startswith("# ")), path.stem)
    pm_meta = nb.metadata.get("papermill", {})
    return {"title": title, "parameters": pm_meta.get("parameters", {}),
            "end": pm_meta.get("end_time"), "seconds": pm_meta.get("duration")}


def _page_info(page: Path, reports_dir: Path) -> dict[str, Any]:
    """A report's title and papermill facts from its executed notebook; without one (a fresh
    clone: reports/executed is not committed) the title is the page's first heading."""
    executed = reports_dir / "executed" / f"{page.stem}.ipynb"
    if executed.exists():
        return _executed_info(executed)
    found = re.search(r"<h1[^>]*>([^<]+)", page.read_text(encoding="utf-8"))
    return {"title": html.unescape(found.group(1)).strip() if found else page.stem, "parameters": {}}


def write_index(html_dir: str | os.PathLike, reports_dir: str | os.PathLike = REPORTS_DIR,
                weights_dir: str | os.PathLike = WEIGHTS_DIR, profile: str | None = None) -> Path:
    """Write ``index.html`` in ``html_dir`` from ``reports_dir``'s metrics and reports; return its path."""
    dest = Path(html_dir) / "index.html"
    page = index_page(html_dir, reports_dir, weights_dir, profile)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(page, encoding="utf-8")
    return dest


def index_page(html_dir: str | os.PathLike, reports_dir: str | os.PathLike = REPORTS_DIR,
               weights_dir: str | os.PathLike = WEIGHTS_DIR, profile: str | None = None) -> str:
    """The front page's HTML for the reports in ``html_dir`` and the metrics in ``reports_dir``.

    The profile is the executed notebooks' (or ``profile``, or the only metrics file there is).
    """
    from fer.config import short_path

    html_dir, reports_dir, weights_dir = Path(html_dir), Path(reports_dir), Path(weights_dir)
    pages = sorted(html_dir.glob("[0-9][0-9]_*.html"))
    infos = {p.stem: _page_info(p, reports_dir) for p in pages}
    params = next((i["parameters"] for i in infos.values() if i["parameters"]), {})
    metric_files = sorted((reports_dir / "metrics").glob("*.json"))
    profile = profile or params.get("profile") or (metric_files[0].stem if len(metric_files) == 1 else "?")
    path = reports_dir / "metrics" / f"{profile}.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    data = params.get("data_source") or metrics.get("explore", {}).get("source")
    # an absolute path as the project sees it (../shared/...); "synthetic" and relative paths as given
    data = short_path(data) if data and os.path.isabs(data) else data or "located automatically (FER_DATA / data/raw / Kaggle)"
    ends = [i.get("end") for i in infos.values() if i.get("end")]
    date = max(ends)[:16].replace("T", " ") + " UTC" if ends else None
    seconds = [i["seconds"] for i in infos.values() if i.get("seconds")]
    took = f" &middot; the {len(seconds)} notebooks took {_duration(sum(seconds))}" if seconds else ""
    executed = f" &middot; executed {esc(date)}" if date else ""
    ev = metrics.get("evaluate", {})
    cards = _cards(weights_dir)
    items = "\n".join(
        f'<li><a href="{esc(p.name)}">{esc(infos[p.stem]["title"])}</a> <small>({esc(p.name)}'
        + (f", {_duration(infos[p.stem]['seconds'])}" if infos[p.stem].get("seconds") else "") + ")</small></li>"
        for p in pages) or "<li>no reports rendered yet</li>"
    trained = metrics.get("train", {}).get("trained_in_this_run") is not False
    skip = "" if trained else " --skip-training"
    make = f" (or <code>make reproduce PROFILE={esc(str(profile))}</code>)" if trained else ""
    nav = " ".join(f'<a href="{esc(p.name)}">{esc(infos[p.stem]["title"])}</a>' for p in pages)
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FER study: results and reports ({esc(str(profile))})</title>
<style>
{CSS.read_text(encoding="utf-8")}</style></head>
<body>
<h1>Facial expression recognition on FER2013</h1>
<p class="meta">Profile <code>{esc(str(profile))}</code> &middot; data <code>{esc(str(data))}</code>{executed}{took}</p>
<nav>{nav}</nav>
{_evaluated(ev, cards)}
{_per_class_section(metrics, html_dir)}
{_comparison(ev)}
{_shipped(cards, ev.get("model_card", {}).get("sha256"))}
{_trained_here(metrics, str(profile))}
<h2 id="reports">The reports</h2>
<ol class="reports">
{items}
</ol>
<p><small>Regenerate with <code>python -m fer reproduce --profile {esc(str(profile))}{skip}</code>{make}; this page alone, from the reports and metrics already
there, with <code>python -m fer reports --index-only</code>. Metrics as JSON in <code>reports/metrics/{esc(str(profile))}.json</code>.</small></p>
</body></html>
"""
    return body
