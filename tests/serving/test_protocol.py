"""Request schemas: the ``recommend`` tool's flat arguments are a valid /v1/recommend body."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pydantic")

from pydantic import ValidationError  # noqa: E402

from llmrec.serving.protocol import RecommendRequest  # noqa: E402
from llmrec.serving.service import ServiceError, item_filter, tool_arguments_to_request  # noqa: E402


def test_tool_arguments_become_filters() -> None:
    args = {
        "history": ["Heat"],
        "query": "funny, not romance",
        "categories": ["Comedy"],
        "exclude_categories": ["Romance"],
        "year_min": 1990,
        "exclude_items": ["i3"],
    }
    request = tool_arguments_to_request(json.dumps(args), "base")
    assert request.model == "base" and request.history == ["Heat"]
    f = item_filter(request.filters)
    assert f.categories == ("Comedy",) and f.exclude_categories == ("Romance",)
    assert f.year_min == 1990 and f.year_max is None and f.exclude == frozenset({"i3"})
    assert RecommendRequest.model_validate(args).filters == request.filters


def test_a_filter_given_twice_or_unknown_is_refused() -> None:
    with pytest.raises(ValidationError, match="given twice"):
        RecommendRequest.model_validate({"year_min": 1990, "filters": {"year_min": 1980}})
    with pytest.raises(ValidationError):
        RecommendRequest.model_validate({"history": ["i0"], "genres": ["Comedy"]})
    with pytest.raises(ServiceError):
        tool_arguments_to_request("[1, 2]", None)
