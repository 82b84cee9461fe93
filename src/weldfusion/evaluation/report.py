"""Evaluation outputs (SPEC §10): metrics.json, PNG pictures and one self-contained report.html."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from weldfusion.data.categories import CATEGORIES  # noqa: E402
from weldfusion.metrics.figures import roc_points  # noqa: E402
from weldfusion.runs import RunData  # noqa: E402
from weldfusion.io import write_atomic, write_json_atomic, write_text_atomic  # noqa: E402

TSNE_LIMIT = 3000
HEADLINE = ("accuracy", "f1_macro", "f1_weighted", "precision_weighted", "recall_weighted", "auroc_defect")


@dataclass
class Outcome:
    """What an evaluation hands to the report: the figures and the arrays behind the pictures (usable welds)."""

    metrics: dict
    labels: np.ndarray
    defect_score: np.ndarray
    embedding: np.ndarray  # for the 2-D map
    masked: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    where: dict[str, bytes] = field(default_factory=dict)  # timelines and photo heatmaps of the highest-scoring welds


def finish_metrics(data: RunData, outcome: Outcome) -> dict:
    config = data.run.config
    return {**outcome.metrics, "skipped": outcome.skipped, "masked": outcome.masked,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "data_root": str(data.root),
            "data_fingerprint": data.fingerprint, "config": config.to_dict()}  # fmt: skip


def write_outputs(data: RunData, outcome: Outcome) -> tuple[Path, dict]:
    """RUN/eval/<split>/ with metrics.json, the pictures and report.html; returns it and the metrics."""
    metrics = finish_metrics(data, outcome)
    ctx = data.run
    folder = ctx.paths.eval(metrics["split"])
    write_json_atomic(folder / "metrics.json", metrics)
    pictures = {}
    if metrics.get("confusion_matrix"):
        pictures["confusion_matrix.png"] = confusion_picture(metrics)
    if roc_points(outcome.labels, outcome.defect_score):
        pictures["roc_curves.png"] = roc_picture(outcome)
    pictures["embedding_map.png"] = embedding_picture(outcome, ctx.config.eval.embedding_map, ctx.config.seed)
    pictures.update(outcome.where)
    for name, png in pictures.items():
        write_atomic(folder / name, lambda tmp, data=png: tmp.write_bytes(data))
    write_text_atomic(folder / "report.html", render_html(metrics, pictures))
    return folder, metrics


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def confusion_picture(metrics: dict) -> bytes:
    matrix = np.array(metrics["confusion_matrix"])
    labels = metrics["labels"]
    figure, axis = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            axis.text(j, i, str(value), ha="center", va="center", fontsize=7, color="white" if value > matrix.max() / 2 else "black")
    axis.set_title(f"confusion matrix ({metrics['split']}, k={metrics['k']})")
    return _png(figure)


def roc_picture(outcome: Outcome) -> bytes:
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    for name, (fpr, tpr) in roc_points(outcome.labels, outcome.defect_score).items():
        bold = name == "all defects"
        axis.plot(fpr, tpr, linewidth=2.5 if bold else 1.0, color="black" if bold else None, label=name)
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set_xlabel("false alarm rate (Good flagged)")
    axis.set_ylabel("defect recall")
    axis.set_title("ROC: each defect type against Good")
    axis.legend(fontsize=7, loc="lower right")
    return _png(figure)


def embedding_picture(outcome: Outcome, method: str, seed: int) -> bytes:
    points = np.nan_to_num(outcome.embedding.astype(np.float64))
    if len(points) < 3:
        xy, title = np.zeros((len(points), 2)), "too few welds for a map"
    elif method == "tsne" and len(points) <= TSNE_LIMIT:
        perplexity = float(min(30, max(2, (len(points) - 1) / 3)))
        xy, title = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points), "t-SNE"
    else:
        xy, title = PCA(2, random_state=seed).fit_transform(points), "PCA"
    figure, axis = plt.subplots(figsize=(7, 5.5))
    colours = plt.get_cmap("tab20")
    for code in sorted(set(outcome.labels.tolist())):
        chosen = outcome.labels == code
        axis.scatter(xy[chosen, 0], xy[chosen, 1], s=14, color=colours(code), label=CATEGORIES[code])
    axis.set_title(f"embedding map ({title}), coloured by category")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _png(figure)


def _cell(value: object, key: str | None = None) -> str:
    text = "–" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
    attribute = f' data-metric="{html.escape(key)}"' if key else ""
    return f"<td{attribute}>{html.escape(text)}</td>"


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(metrics: dict, pictures: dict[str, bytes]) -> str:
    """One page, pictures embedded; every figure cell carries data-metric="<json path>" for checking."""
    m = metrics
    sections = [f"<h1>weldfusion evaluation: {html.escape(m['protocol'])} protocol, {html.escape(m['split'])} split</h1>",
                f"<p>{m['n_query']} welds scored against {m['n_reference']} reference welds; k = {m['k']}, metric "
                f"{html.escape(str(m['metric']))}. {html.escape(m['timestamp'])}. Data {html.escape(m['data_root'])}, "
                f"fingerprint <code>{html.escape(m['data_fingerprint'])}</code>.</p>"]  # fmt: skip
    if m.get("synthetic"):
        sections.insert(0, '<p class="synthetic"><strong>SYNTHETIC DATA</strong>: these welds were made by '
                           "<code>weldfusion synth</code>; the figures show that the system works, not how well it "
                           "detects real defects.</p>")  # fmt: skip
    headline = [f"<tr><th>{html.escape(k)}</th>{_cell(m.get(k), k)}</tr>" for k in HEADLINE if m.get(k) is not None]
    sections.append("<h2>Headline</h2>" + _table(["figure", "value"], headline))
    if m.get("decision"):
        rows = [f"<tr><th>{html.escape(k)}</th>{_cell(v, 'decision.' + k)}</tr>" for k, v in m["decision"].items()]
        sections.append("<h2>Decision at the threshold chosen on VAL (equal error rate)</h2>" + _table(["figure", "value"], rows))
    if m.get("per_class"):
        rows = [f"<tr><th>{html.escape(name)}</th>" + "".join(_cell(v[f], f"per_class.{name}.{f}") for f in ("precision", "recall", "f1", "support")) + "</tr>"
                for name, v in m["per_class"].items()]  # fmt: skip
        sections.append("<h2>Per class</h2>" + _table(["category", "precision", "recall", "F1", "support"], rows))
    if m.get("auroc_per_defect"):
        rows = [f"<tr><th>{html.escape(name)}</th>{_cell(v, 'auroc_per_defect.' + name)}</tr>" for name, v in m["auroc_per_defect"].items()]
        sections.append("<h2>AUROC per defect type (against Good)</h2>" + _table(["defect type", "AUROC"], rows))
    if m.get("localisation") is not None:
        sections.append(localisation_section(m["localisation"]))
    sections.append(per_modality_section(m))
    if m.get("scorers"):
        sections.append(scorers_section(m["scorers"]))
    if m.get("without_modality"):
        keys = ["accuracy", "f1_macro", "f1_weighted", "auroc_defect"]
        rows = [f"<tr><th>{html.escape(mod)}</th>" + "".join(_cell(v.get(k), f"without_modality.{mod}.{k}") for k in keys) + "</tr>"
                for mod, v in m["without_modality"].items()]  # fmt: skip
        sections.append("<h2>The fused model without one modality</h2><p>that modality masked in every weld (reference "
                        "and query); the drop from the headline shows how much the fusion relies on it</p>"
                        + _table(["masked modality", *keys], rows))  # fmt: skip
    if m.get("paper"):
        rows = [f"<tr><th>{html.escape(name)}</th>" + "".join(_cell(v[f], f"paper.{name}.{f}") for f in ("paper_audio", "paper_video", "paper_fused", "ours_audio", "ours_video", "ours_fused")) + "</tr>"
                for name, v in m["paper"].items()]  # fmt: skip
        ours = "ours (on SYNTHETIC welds: not comparable)" if m.get("synthetic") else "ours"
        sections.append(f"<h2>Against the dataset paper (TEST AUROC, unsupervised audio/video autoencoders; {ours})</h2>"
                        + _table(["", "paper audio", "paper video", "paper fused", "ours audio", "ours video", "ours fused"], rows))  # fmt: skip
    for name, png in pictures.items():
        sections.append(f"<h2>{html.escape(name[:-4].replace('_', ' '))}</h2><img alt=\"{html.escape(name)}\" "
                        f"src=\"data:image/png;base64,{base64.b64encode(png).decode()}\">")  # fmt: skip
    problems = [f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in m["skipped"].items()]
    problems += [f"<li><code>{html.escape(k)}</code>: masked " + html.escape("; ".join(f"{mod} ({why})" for mod, why in v.items())) + "</li>"
                 for k, v in m["masked"].items()]  # fmt: skip
    sections.append(f"<h2>Skipped and masked welds ({len(m['skipped'])} skipped, {len(m['masked'])} with masked modalities)</h2>"
                    + (f"<ul>{''.join(problems)}</ul>" if problems else "<p>none</p>"))  # fmt: skip
    sections.append(f"<h2>Configuration</h2><pre>{html.escape(yaml.safe_dump(m['config'], sort_keys=False))}</pre>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{text-align:left;background:#f4f4f4}"
             "img{max-width:100%}pre{background:#f8f8f8;padding:1em;font-size:12px}"
             ".synthetic{background:#fff3cd;border:1px solid #e0b000;padding:.5em 1em}")  # fmt: skip
    return f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>weldfusion report</title><style>{style}</style></head><body>{''.join(sections)}</body></html>\n"


def localisation_section(figures: dict) -> str:
    """Where the defect was found, against the ground truth; `unavailable` where the scorer gives no
    profile or heatmap for that modality."""
    rows = []
    for modality in ("video", "audio", "sensor", "images"):
        value = figures.get(modality)
        cells = ("pixel_auroc", "peak_in_box", "chance") if modality == "images" else ("peak_in_window", None, "chance")
        if value is None:
            rows.append(f"<tr><th>{modality}</th><td colspan=\"3\">unavailable (this scorer does not localise)</td></tr>")
        else:
            rows.append(f"<tr><th>{modality}</th>" + "".join(_cell(value.get(c), f"localisation.{modality}.{c}") if c else _cell(None)
                                                          for c in cells) + "</tr>")  # fmt: skip
    return (f"<h2>Localisation against the ground truth (peaks within ±{figures.get('tolerance_s')} s)</h2>"
            + _table(["modality", "peak in window / pixel AUROC", "peak in box (photos)", "chance"], rows))  # fmt: skip


def per_modality_columns(per_modality: dict) -> list[str]:
    """The scalar figures that the protocol reported per modality, in a fixed order."""
    present = {k for figures in per_modality.values() for k, v in figures.items() if isinstance(v, (int, float)) or v is None}
    return [k for k in (*HEADLINE, "weight", "n_reference", "n_query") if k in present]


def per_modality_section(m: dict) -> str:
    keys = per_modality_columns(m["per_modality"])
    rows = [f"<tr><th>{html.escape(mod)}</th>" + "".join(_cell(v.get(k), f"per_modality.{mod}.{k}") for k in keys) + "</tr>"
            for mod, v in m["per_modality"].items()]  # fmt: skip
    return f"<h2>Per modality</h2><p>{html.escape(m.get('per_modality_caption', ''))}</p>" + _table(["modality", *keys], rows)


def scorers_section(scorers: dict) -> str:
    """The anomaly scorers side by side: fused and per-modality AUROC, and per defect type."""
    modalities = list(dict.fromkeys(mod for v in scorers.values() for mod in v["per_modality"]))
    rows = [f"<tr><th>{html.escape(name)}</th>{_cell(v['auroc_defect'], f'scorers.{name}.auroc_defect')}"
            + "".join(_cell(v["per_modality"].get(mod), f"scorers.{name}.per_modality.{mod}") for mod in modalities) + "</tr>"
            for name, v in scorers.items()]  # fmt: skip
    defects = list(dict.fromkeys(d for v in scorers.values() for d in v["auroc_per_defect"]))
    per_defect = [f"<tr><th>{html.escape(d)}</th>" + "".join(_cell(v["auroc_per_defect"].get(d), f"scorers.{name}.auroc_per_defect.{d}")
                                                             for name, v in scorers.items()) + "</tr>" for d in defects]  # fmt: skip
    return ("<h2>Anomaly scorers side by side (TEST AUROC)</h2><p>tokens: each token's distance to a coreset memory bank "
            "of Good TRAIN tokens, max per weld; pooled: whole-weld pooled features, k nearest Good TRAIN welds. Each "
            "scorer's fusion weights are chosen on VAL; the first one decides.</p>"
            + _table(["scorer", "fused", *modalities], rows) + _table(["defect type", *scorers], per_defect))  # fmt: skip
