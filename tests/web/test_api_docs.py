"""docs/api.md is generated from the OpenAPI document and must be up to date."""

from __future__ import annotations

from pathlib import Path

from provisioner.web.openapi_md import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_docs_api_md_matches_openapi() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "run: python -m provisioner.web.openapi_md > docs/api.md"
    )


def test_every_operation_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for needle in (
        "`GET /api/v1/machines`",
        "`POST /api/v1/machines/{name}/power`",
        "`DELETE /api/v1/assets/{name}`",
    ):
        assert needle in text


def test_docs_http_md_shows_every_golden_script() -> None:
    text = (DOC.parent / "http.md").read_text(encoding="utf-8")
    for golden in sorted((Path(__file__).parent / "golden").glob("*.ipxe")):
        assert golden.read_text(encoding="utf-8") in text, golden.name
