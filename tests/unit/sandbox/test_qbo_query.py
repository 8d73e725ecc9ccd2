"""The QuickBooks simulator's query language: tokenizer/parser edge cases and evaluation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox.quickbooks.query import QueryError, evaluate, parse_query, quote

ROWS = [
    {"Id": "1", "DisplayName": "O'Brien & Sons \"Best\" Plumbing", "Active": True,
     "Balance": Decimal("10.50"), "MetaData": {"LastUpdatedTime": "2025-01-02T10:00:00-07:00"}},
    {"Id": "2", "DisplayName": "C:\\Temp Supplies", "Active": True, "Balance": Decimal("0")},
    {"Id": "10", "DisplayName": "山田商事株式会社", "Active": True, "Balance": Decimal("99")},
    {"Id": "3", "DisplayName": "Acme", "Active": False, "Balance": Decimal("5"),
     "CurrencyRef": {"value": "USD"}, "PrimaryEmailAddr": {"Address": "a@acme.test"}},
]


def run(text: str) -> dict[str, Any]:
    return evaluate(parse_query(text), ROWS)


def ids(text: str) -> list[str]:
    result = run(text)
    rows = result.get("Customer", [])
    assert isinstance(rows, list)
    return [r["Id"] for r in rows]


def test_escaped_quote_and_double_quotes_inside_literal() -> None:
    q = parse_query(
        r"select * from Customer where DisplayName = 'O\'Brien & Sons \"Best\" Plumbing'"
    )
    assert q.where[0].values[0].value == 'O\'Brien & Sons "Best" Plumbing'
    assert ids(
        "SELECT * FROM Customer WHERE DisplayName = " + quote("O'Brien & Sons \"Best\" Plumbing")
    ) == ["1"]


def test_backslash_escape() -> None:
    assert quote("C:\\Temp") == "'C:\\\\Temp'"
    assert ids("select * from Customer where DisplayName = " + quote("C:\\Temp Supplies")) == ["2"]
    # an unescaped single backslash escapes the next character (T), so this does not match
    assert ids(r"select * from Customer where DisplayName = 'C:\Temp Supplies'") == []


def test_non_ascii_literal_and_like() -> None:
    assert ids("select * from Customer where DisplayName = '山田商事株式会社'") == ["10"]
    assert ids("select * from Customer where DisplayName LIKE '%商事%'") == ["10"]


def test_like_escapes_regex_metacharacters_and_is_case_insensitive() -> None:
    assert ids("select * from customer where displayname like 'o\\'brien & sons \"best\"%'") == [
        "1"
    ]
    assert ids("select * from Customer where DisplayName like '%.%'") == []


def test_unterminated_and_bad_escapes_are_parse_errors() -> None:
    for bad in (
        "select * from Customer where DisplayName = 'O'Brien'",
        "select * from Customer where DisplayName = 'abc",
        "select * from Customer where DisplayName = 'abc\\'",
        "select * from Customer where DisplayName = abc",
        "select * from Customer where DisplayName = 'a' or Id = '1'",
        "select * from Customer order by Id",
        "select * Customer",
        "select * from Customer maxresults x",
        "select * from Customer where Id in ('1',)",
        "select * from Customer where Id == '1'",
        "select * from Customer; drop table",
    ):
        with pytest.raises(QueryError) as info:
            parse_query(bad)
        assert info.value.code == "4000", bad


def test_unknown_entity_or_property_is_validation_error() -> None:
    with pytest.raises(QueryError) as info:
        parse_query("select * from Widget")
    assert info.value.code == "4001"
    with pytest.raises(QueryError) as info:
        parse_query("select * from Customer where Nickname = 'x'")
    assert info.value.code == "4001"


def test_keywords_entities_fields_case_insensitive() -> None:
    q = parse_query("SeLeCt * FrOm cUsToMeR wHeRe dIsPlAyNaMe = 'Acme' OrDeRbY iD dEsC")
    assert q.entity == "Customer"
    assert q.order == [("iD", True)]


def test_inactive_rows_hidden_unless_active_mentioned() -> None:
    assert "3" not in ids("select * from Customer")
    assert ids("select * from Customer where Active = false") == ["3"]
    assert set(ids("select * from Customer where Active IN (true, false)")) == {"1", "2", "3", "10"}


def test_numeric_ordering_of_ids_and_comparisons() -> None:
    assert ids("select * from Customer") == ["1", "2", "10"]
    assert ids("select * from Customer orderby Id desc") == ["10", "2", "1"]
    assert ids("select * from Customer where Id > '2'") == ["10"]
    assert ids("select * from Customer where Balance >= 10.5") == ["1", "10"]
    assert ids("select * from Customer where Id in ('1', '10')") == ["1", "10"]


def test_refs_and_email_compare_by_value() -> None:
    active = " and Active = false"
    with pytest.raises(QueryError, match="not queryable"):  # not a documented filter
        ids("select * from Customer where CurrencyRef = 'USD'" + active)
    assert ids("select * from Customer where PrimaryEmailAddr = 'A@acme.test'" + active) == ["3"]


def test_datetime_comparison_across_offsets() -> None:
    assert ids(
        "select * from Customer where MetaData.LastUpdatedTime > '2025-01-02T16:59:59Z'"
    ) == ["1"]
    assert ids(
        "select * from Customer where MetaData.LastUpdatedTime > '2025-01-02T17:00:00Z'"
    ) == []


def test_paging_count_and_cap() -> None:
    assert run("select count(*) from Customer") == {"totalCount": 3}
    page = run("select * from Customer startposition 2 maxresults 1")
    assert page["startPosition"] == 2 and page["maxResults"] == 1
    assert [r["Id"] for r in page["Customer"]] == ["2"]
    assert parse_query("select * from Customer maxresults 1000").max_results == 1000
    with pytest.raises(QueryError, match="MAXRESULTS"):  # refused, not capped
        parse_query("select * from Customer maxresults 1001")
    assert parse_query("select * from Customer maxresults 5 startposition 3").start_position == 3
    assert run("select * from Customer where DisplayName = 'nobody'") == {}


def test_projection() -> None:
    result = run("select Id, DisplayName from Customer where Id = '1'")
    assert result["Customer"] == [
        {"Id": "1", "DisplayName": "O'Brien & Sons \"Best\" Plumbing", "sparse": True}
    ]
