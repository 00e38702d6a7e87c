"""Render the report document (tvdeploy.audit.report_model) to HTML and PDF.

HTML: ``templates/report/report.html.j2``, autoescaped, self-contained (inline CSS; nothing
fetched). PDF: WeasyPrint (the optional extra ``report``) from that same HTML, with a URL fetcher
that refuses every URL, so the PDF can hold nothing the HTML does not.
"""

from __future__ import annotations

import json
from typing import Any

from tvdeploy.errors import TvdeployError

TEMPLATE = "report/report.html.j2"
PDF_HELP = ("--pdf needs WeasyPrint: pip install 'tvdeploy[report]' (on Debian also apt-get install "
            "libpango-1.0-0 libpangoft2-1.0-0)")


def render_json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")


def render_html(doc: dict[str, Any]) -> bytes:
    import jinja2

    from tvdeploy.resources import templates_dir

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(doc=doc).encode("utf-8")


def _no_fetch(url: str, *args: object, **kwargs: object) -> dict[str, Any]:
    raise ValueError(f"the report fetches nothing ({url[:60]})")


def render_pdf(html: bytes) -> bytes:
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Pango libraries are missing
        raise TvdeployError(f"{PDF_HELP} ({type(exc).__name__}: {str(exc)[:120]})") from None
    pdf = weasyprint.HTML(string=html.decode("utf-8"), url_fetcher=_no_fetch).write_pdf()
    assert isinstance(pdf, bytes)
    return pdf
