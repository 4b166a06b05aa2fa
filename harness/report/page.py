"""The report's sections rendered as HTML (one self-contained page) and as Markdown.

The page reads top to bottom as a researcher would: what ran (header), what was found
(statistics), the matrices with their intervals and heatmaps, training curves, what the models
output, what it cost, and the data. Every table sits in a block that scrolls sideways on its own
when it is wider than the page, every picture is embedded (base64) with a one-line caption saying
how to read it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from tabulate import tabulate

from harness.report.facts import diff_html, diff_markdown

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;padding:1.5em 2em;max-width:78em;
  color:#222;line-height:1.4}
h1{margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}h3{margin-bottom:.3em}
.scroll{overflow-x:auto;max-width:100%;margin:.6em 0}
table{border-collapse:collapse;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .55em;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
th{background:#f4f4f4}
table.facts td,table.facts th{text-align:left;white-space:normal;vertical-align:top}
table.facts th{width:11em}
table.facts td{word-break:break-word;font-size:.95em}
table.samples td{text-align:left;white-space:normal;font-family:ui-monospace,Menlo,Consolas,monospace;
  font-size:.9em}
table.samples th{text-align:left}
.ref{font-weight:600}
table.samples td:first-child{font-family:system-ui,sans-serif;white-space:nowrap}
del{background:#fcd6d6;color:#8a1010}
ins{background:#d4f2d4;color:#0b5a0b;text-decoration:none}
figure{margin:1em 0}figure img{max-width:100%;height:auto;display:block}
figcaption,.caption{color:#555;font-size:.9em;margin:.3em 0}
.sig{color:#064}.ns{color:#555}
.lead{color:#555}
details summary{cursor:pointer;color:#345}
"""


# ---------------------------------------------------------------------------- HTML
def scroll(table_html: str) -> str:
    """A table in a block that scrolls sideways by itself when wider than the page."""
    return f"<div class='scroll'>{table_html}</div>"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], css: str = "", escaped: bool = False) -> str:
    """A table of text cells (escaped unless ``escaped``), wrapped to scroll."""
    def cell(text: str) -> str:
        return text if escaped else escape(str(text))

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    cls = f" class='{css}'" if css else ""
    return scroll(f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def facts_html(facts: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return scroll(f"<table class='facts'>{rows}</table>")


def figure_html(path: Path, alt: str, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<figure><img alt='{escape(alt)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def findings_html(found: Mapping[str, list], metric: str, correction: str = "",
                  silent: Sequence[str] = ()) -> list[tuple[str, str]]:
    """One block per group of findings: each finding's sentence, effect size with its interval,
    corrected p-value and notes; ``correction`` says how p-values were corrected, ``silent`` why
    some metrics carry no information."""
    out = []
    for group, items in found.items():
        lis = "".join(f"<li class='{'sig' if f.significant else 'ns'}'>{escape(f.text())}</li>" for f in items)
        extra = "".join(f"<p class='caption'><b>Note:</b> {escape(why)}</p>" for why in silent)
        out.append((f"Statistics ({group})", f"<p class='caption'>{escape(metric.upper())} on test; green: "
                                             f"significant at α = 0.05 after the correction. {escape(correction)}"
                                             f"</p><ul>{lis}</ul>{extra}"))
    return out


def samples_html(samples: Sequence[Mapping[str, Any]]) -> str:
    parts = ["<p class='caption'>The same test utterances for every model (chosen by a hash of their ids), "
             "each model's first seed. In a hypothesis, <del>struck red</del> is reference text the model missed "
             "and <ins>green</ins> is text it added.</p>"]
    for group in samples:
        title = group["language"] if len({g["dataset"] for g in samples}) == 1 else \
            f"{group['dataset']}:{group['language']}"
        if not group["utterances"]:
            continue
        parts.append(f"<h3>{escape(title)}</h3>")
        rows = []
        for utt in group["utterances"]:
            rows.append([f"<span class='ref' title='{escape(utt['id'])}'>reference</span>",
                         f"<span class='ref'>{escape(utt['reference'])}</span>"])
            for model, hyp in utt["hypotheses"].items():
                rows.append([escape(model), diff_html(utt["reference"], hyp["text"])])
        parts.append(html_table(["", "text"], rows, css="samples", escaped=True))
    return "".join(parts)


def page(facts: Sequence[tuple[str, str]], blocks: Sequence[tuple[str, str]]) -> str:
    """The whole page: the header (facts) then ``blocks`` of (title, HTML), in order."""
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>bench report</title><style>{CSS}</style></head><body>",
             "<h1>bench report</h1>",
             f"<p class='lead'>A model × language benchmark of pre-trained speech models fine-tuned with a CTC "
             f"head; generated {escape(time.strftime('%Y-%m-%d %H:%M'))} from the results store.</p>",
             "<section id='what-ran'><h2>What ran</h2>", facts_html(facts), "</section>"]
    for title, body in blocks:
        slug = "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")[:40]
        parts.append(f"<section id='{escape(slug)}'><h2>{escape(title)}</h2>{body}</section>")
    parts.append("</body></html>\n")
    return "".join(parts)


# ---------------------------------------------------------------------------- Markdown
def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    clean = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    return tabulate(clean, headers=list(headers), tablefmt="github", disable_numparse=True)


def facts_markdown(facts: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in facts) + "\n"


def samples_markdown(samples: Sequence[Mapping[str, Any]]) -> str:
    parts = ["The same test utterances for every model (chosen by a hash of their ids), each model's first seed; "
             "in a hypothesis `[-x-]` is reference text the model missed, `{+y+}` text it added.\n"]
    for group in samples:
        if not group["utterances"]:
            continue
        title = group["language"] if len({g["dataset"] for g in samples}) == 1 else \
            f"{group['dataset']}:{group['language']}"
        parts.append(f"### {title}\n")
        rows = []
        for utt in group["utterances"]:
            rows.append([f"reference ({utt['id']})", utt["reference"]])
            rows += [[model, diff_markdown(utt["reference"], hyp["text"])] for model, hyp in utt["hypotheses"].items()]
        parts.append(md_table(["", "text"], rows) + "\n")
    return "\n".join(parts)
