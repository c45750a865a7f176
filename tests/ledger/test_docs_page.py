"""The API reference pages load everything from this server: nothing from a CDN or any other host."""

from __future__ import annotations

import re

import httpx
import pytest

from ledger.docs_page import ASSETS, ASSETS_URL

# Every URL a page names: attributes, and the string values of Swagger UI's and ReDoc's settings.
URL_IN_PAGE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|"""
                         r"""(?:url|oauth2RedirectUrl)\s*:\s*['"]([^'"]+)['"]""")


def urls_of(page: str) -> list[str]:
    return [attribute or setting for attribute, setting in URL_IN_PAGE.findall(page)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_reference_page_names_only_this_servers_urls_and_each_answers(
    http: httpx.AsyncClient, page: str
) -> None:
    response = await http.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    # No other host at all: no scheme, no protocol-relative URL (fonts, scripts, the validator badge).
    assert re.search(r"https?:|//[a-z0-9]", html, re.IGNORECASE) is None, html
    urls = urls_of(html)
    assert "/openapi.json" in urls and any(url.startswith(ASSETS_URL + "/") for url in urls)
    for url in urls:
        assert url.startswith("/"), url
        fetched = await http.get(url)
        assert fetched.status_code == 200, url
        assert fetched.content, url


async def test_swagger_ui_is_told_not_to_call_the_online_validator(http: httpx.AsyncClient) -> None:
    html = (await http.get("/docs")).text
    assert '"validatorUrl": null' in html


@pytest.mark.parametrize("name", ASSETS)
async def test_every_asset_is_served_with_its_type(http: httpx.AsyncClient, name: str) -> None:
    response = await http.get(f"{ASSETS_URL}/{name}")
    assert response.status_code == 200 and len(response.content) > 100
    expected = {"js": "javascript", "css": "text/css", "png": "image/png"}[name.rpartition(".")[2]]
    assert expected in response.headers["content-type"]
    again = await http.get(f"{ASSETS_URL}/{name}", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304  # browsers keep them


async def test_the_assets_folder_is_not_listed_and_unknown_files_are_the_apis_404(http: httpx.AsyncClient) -> None:
    for path in (f"{ASSETS_URL}/", f"{ASSETS_URL}/nope.js", f"{ASSETS_URL}/../../core/config.py"):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert response.json()["errors"]["class"] == "RoutingError"


async def test_the_oauth2_redirect_page_is_served(http: httpx.AsyncClient) -> None:
    response = await http.get("/docs/oauth2-redirect")
    assert response.status_code == 200 and "oauth2" in response.text.lower()
