"""Write plots.html: the page template that ``dvc plots show`` and ``dvc plots diff`` fill.

``.dvc/config`` names it (``plots.html_template``). DVC's own page loads vega, vega-lite and
vega-embed from a CDN and is blank offline; this one inlines the vendored bundles, so the page
loads no URL. It has no ``{scripts}`` placeholder, which is where DVC would put its CDN tags.

After replacing a bundle (README.md says how): ``python vendor/vega/make_template.py``.
``tests/test_browser.py`` checks that plots.html is what this writes.
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "plots.html"
BUNDLES = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")  # in load order: vega-embed needs both
# Dropped when inlining: a browser with developer tools open would fetch the map from the page's folder.
SOURCE_MAP = re.compile(r"\n?//# sourceMappingURL=\S+\s*$")
# What DVC replaces anywhere in the template, and what would end an inline script early.
FORBIDDEN = ("{scripts}", "{plot_divs}", "{refresh_tag}", "</script", "<!--")

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC plots</title>
<style>
  body { font-family: sans-serif; }
  table { border-spacing: 15px; }
</style>
<!-- vega, vega-lite and vega-embed inlined from vendor/vega (BSD-3-Clause; versions in its README.md) -->
@BUNDLES@
</head>
<body>
{plot_divs}
</body>
</html>
"""


def inline(name: str) -> str:
    """A bundle's text as it goes into the page: the file without its source-map comment."""
    text = SOURCE_MAP.sub("", (HERE / name).read_text(encoding="utf-8"))
    found = [s for s in FORBIDDEN if s in text]
    if found:
        raise ValueError(f"{name} contains {found}: it cannot be inlined into a DVC template as it is")
    return text


def render() -> str:
    scripts = "\n".join(f'<script data-bundle="{name}">\n{inline(name)}\n</script>' for name in BUNDLES)
    return PAGE.replace("@BUNDLES@", scripts)


if __name__ == "__main__":
    TEMPLATE.write_text(render(), encoding="utf-8", newline="\n")
    print(f"wrote {TEMPLATE} ({TEMPLATE.stat().st_size // 1024} KiB)")
