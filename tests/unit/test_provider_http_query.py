"""ProviderHttp writes `params` into the URL itself (one URL parse in httpx instead of
two, issue 12): the request that goes out is the one httpx would have built."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from providers.http import ProviderHttp
from providers.oauth import TokenSet
from providers.ratelimit import RateLimiter, RateLimits
from providers.testing import MemoryTokenStore
from providers.tokens import ConnectionTokens

BASES = ["http://127.0.0.1:8000/quickbooks/v3/company/r-1/query",
         "https://api.xero.com/api.xro/2.0/Contacts",
         "https://api.example.test/accounting/account/AbC/users/clients?page=2&q=x"]
PARAMS: list[dict[str, Any]] = [
    {"minorversion": "75", "requestid": "0123456789abcdef0123456789abcdef"},
    {"query": "SELECT * FROM Customer WHERE DisplayName = 'O\\'Brien & Sons' "
              "AND Active IN (true, false)", "minorversion": "75"},
    {"query": "SELECT * FROM Customer WHERE Id IN ('1', '2', '3') STARTPOSITION 1 "
              "MAXRESULTS 1000"},
    {"q": "ümlaut é 日本 %20 +plus #hash ?q /slash [x] @at ;semi =eq"},
    {"where": 'Name=="Acme \\"Co\\""', "page": 2, "flag": True, "none": None, "f": 1.5},
    {"multi": ["a", "b c"], "page": "3"},
    {},
]


def edge() -> tuple[ProviderHttp, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    tokens = ConnectionTokens(MemoryTokenStore(TokenSet(
        "tok-1", "ref-1", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))), "acct-q",
        lambda _r: TokenSet("x", "y", dt.datetime.now(dt.UTC)))
    http = ProviderHttp(httpx.Client(transport=httpx.MockTransport(record)), tokens,
                        RateLimiter(RateLimits(per_minute=10_000, concurrent=5)),
                        lambda _r: None, {"Accept": "application/json"})
    return http, sent


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("params", PARAMS)
def test_the_url_sent_is_the_one_httpx_builds_from_params(base: str,
                                                          params: dict[str, Any]) -> None:
    http, sent = edge()
    http.request("GET", base, params=params)
    http.request("POST", base, params=params, json={"a": 1}, write=True)
    want = httpx.Client().build_request("GET", base, params=params).url
    assert [r.url for r in sent] == [want, want]
    assert [r.url.raw for r in sent] == [want.raw, want.raw]
    assert sent[1].content == b'{"a":1}'


def test_no_params_leaves_the_url_as_it_is() -> None:
    http, sent = edge()
    http.request("GET", BASES[2])
    assert str(sent[0].url) == BASES[2]
