"""Render report sections to Markdown and to one self-contained HTML page.

A section is plain data (paragraphs, bullet lists, tables, code blocks, PNG figures), so the two
renderings say the same thing. The renderer numbers the sections (``numbered`` ones, in order):
a section's title never carries its number, so adding one renumbers nothing by hand. The HTML
embeds every figure as a base64 ``data:`` URI and loads nothing: it opens offline, from a file,
in any browser. Its only outward links are the Markdown ``[text](http...)`` links a section writes
(the MLflow UI's run pages, when the report stage knows the UI's address): anchors, never fetched.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Plot:
    png: bytes
    caption: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Code:
    text: str  # shown verbatim, ready to copy (a shell command)
    language: str = "sh"


Block = str | list[str] | Table | Plot | Code  # str: paragraph, list: bullets


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    numbered: bool = True  # False for the lines at the top (next step, summary)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


def headings(sections: Sequence[Section]) -> list[str]:
    """Each section's heading: numbered sections get "1. ", "2. ", ... in order."""
    out, n = [], 0
    for s in sections:
        if s.numbered:
            n += 1
        out.append(f"{n}. {s.title}" if s.numbered else s.title)
    return out


def to_markdown(title: str, sections: Sequence[Section]) -> str:
    out = [f"# {title}", ""]
    for heading, s in zip(headings(sections), sections, strict=True):
        out += [f"## {heading}", ""]
        for b in s.blocks:
            if isinstance(b, str):
                out += [b, ""]
            elif isinstance(b, list):
                out += [f"- {item}" for item in b] + [""]
            elif isinstance(b, Table):
                out += ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in b.rows] + [""]
            elif isinstance(b, Code):
                out += [f"```{b.language}", b.text, "```", ""]
            else:
                out += [f"*Figure: {b.caption} (see report.html).*", ""]
    return "\n".join(out).rstrip() + "\n"


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
# A Markdown link to an http(s) page; the address can hold no quote, space or bracket, so it
# cannot leave the href attribute (matched after escaping: & is already &amp;).
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^\s()\"'<>]+)\)")


def _inline(text: str) -> str:
    """Escape, then turn the Markdown marks the report uses (`code`, **bold**, [text](url)) into tags."""
    text = html.escape(text, quote=False)
    text = _CODE.sub(r"<code>\1</code>", text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    return _LINK.sub(r'<a href="\2">\1</a>', text)


STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 980px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: left; }
th { background: #f4f4f4; }
code { background: #f4f4f4; padding: 0 .25em; border-radius: 3px; }
pre { background: #f4f4f4; padding: .6em .8em; overflow-x: auto; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: .9em; }
img { max-width: 100%; }
nav ul { columns: 2; }
"""


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def to_html(title: str, sections: Sequence[Section]) -> str:
    titles = headings(sections)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<nav><ul>" + "".join(f'<li><a href="#{_anchor(t)}">{html.escape(t)}</a></li>' for t in titles) + "</ul></nav>",
    ]
    for heading, s in zip(titles, sections, strict=True):
        out.append(f'<h2 id="{_anchor(heading)}">{html.escape(heading)}</h2>')
        for b in s.blocks:
            if isinstance(b, str):
                out.append(f"<p>{_inline(b)}</p>")
            elif isinstance(b, list):
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b) + "</ul>")
            elif isinstance(b, Table):
                head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
                body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in b.rows)
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(b, Code):
                out.append(f"<pre><code>{html.escape(b.text, quote=False)}</code></pre>")
            else:
                data = base64.b64encode(b.png).decode("ascii")
                alt = html.escape(b.caption)
                img = f'<img alt="{alt}" src="data:image/png;base64,{data}">'
                out.append(f"<figure>{img}<figcaption>{alt}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
