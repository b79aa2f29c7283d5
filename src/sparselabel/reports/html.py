"""One self-contained report page: the per-cycle table and the figures beside it."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }}
</style></head><body>
<h1>{title}</h1>
<p>{intro}</p>
<h2>Per cycle</h2>
{table}
{figures}
</body></html>
"""


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_page(path: Path, title: str, intro: str, header: Sequence[str], rows: Sequence[Sequence[object]],
               figures: Sequence[tuple[str, Path]]) -> Path:
    """Write ``path`` with the table and the figures (linked by file name, beside the page)."""
    figs = "".join(f"<h2>{html.escape(caption)}</h2><img src=\"{html.escape(fig.name)}\" alt=\"{html.escape(caption)}\">"
                   for caption, fig in figures)
    path.write_text(PAGE.format(title=html.escape(title), intro=html.escape(intro),
                                table=table_html(header, rows), figures=figs))
    return path
