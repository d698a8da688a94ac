"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis 4) on the tiny offline service.

Every operation in the document (``/v1/recommend``, ``/v1/chat/completions``, ``/v1/models``,
``/v1/tools``, ``/health``, ``/ready``) gets schema-derived requests, valid and invalid ones, sent
in-process over ASGI (schemathesis runs the app's lifespan, so the model worker is up). Each
response must not be a 5xx and must match what the document promises: a listed status code, a
listed content type and a body that fits the schema. Generation is seeded and derandomized, so a
failure reproduces; the budget (30 fuzzed requests an operation, plus schemathesis' examples and
boundary cases) keeps the run well under a minute on two cores.

    pytest tests/serving/test_fuzz.py -v

The document is built at import from the routes alone (``create_app`` over a config-only stand-in:
the routes and schemas do not depend on the data or the models), so each operation is its own
sub-test (a failure names it, e.g. ``[POST /v1/recommend]``); the ``app`` fixture checks that the
real service publishes the same document.
(``schemathesis.pytest.from_fixture`` would load it from the fixture instead, but schemathesis
4.32 reads ``Node._nodeid``, which pytest 9.2 no longer has.)
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from llmrec.serving.app import create_app  # noqa: E402
from llmrec.serving.config import Limits, ServeConfig  # noqa: E402

from .fakes import make_service  # noqa: E402  (the parts fixture is in conftest.py)

#: schemathesis settings, as its ``schemathesis.toml`` would spell them.
FUZZ = {
    "seed": 20261201,
    "generation": {"max-examples": 30, "deterministic": True},
    # Only the checks that hold for this API: a valid request may still be refused (unknown user,
    # k over max_k) and an invalid one is answered 400 rather than 422, so the positive/negative
    # acceptance checks do not apply; the contract checked is "no 5xx, and what the document says".
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
    },
}
#: No API keys, whatever the environment says: a 401 on every call would fuzz nothing.
NO_KEYS = {"api_keys": (), "api_keys_env": None}
MAX_K = 10
KNOWN_USER = "u1"  # a user of the tiny data set (tests/llm_fakes.py: make_dataset)


def openapi_document() -> dict:
    return create_app(SimpleNamespace(config=ServeConfig(**NO_KEYS))).openapi()


schema = schemathesis.openapi.from_dict(
    openapi_document(), config=schemathesis.Config.from_dict(FUZZ)
)


@schema.hook
def flatmap_body(context, body):  # noqa: ANN001, ANN201
    """Offer each generated body also in a form the service's own checks let through, so that the
    fuzzer reaches ranking, reasons and replies: random user ids and model names are unknown (404)
    and k over max_k is refused (400), none of which the document can say; a chat ending with a
    tool message is refused unless the message holds a recommend result, which random text never
    does. The steered body keeps everything else as generated."""
    steer = STEER.get(context.operation.path)
    steered = steer(body) if steer is not None and isinstance(body, dict) else None
    return st.just(body) if steered is None or steered == body else st.sampled_from([body, steered])


def _served(fields: dict) -> dict:
    """``fields`` with a known user id, a served model and k within max_k, where they are set."""
    out = dict(fields)
    if isinstance(out.get("user_id"), str):
        out["user_id"] = KNOWN_USER
    if isinstance(out.get("model"), str):
        out["model"] = None
    k = out.get("k")
    if isinstance(k, int | float) and not isinstance(k, bool) and not 1 <= k <= MAX_K:
        out["k"] = 1 + int(abs(k)) % MAX_K
    return out


def _steer_chat(body: dict) -> dict:
    out = _served(body)
    if isinstance(out.get("llmrec"), dict):
        out["llmrec"] = _served(out["llmrec"])
    messages = out.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        if messages[-1].get("role") == "tool":
            out["messages"] = [*messages[:-1], {**messages[-1], "role": "user"}]
    return out


#: Path -> how to steer its bodies.
STEER = {"/v1/recommend": _served, "/v1/chat/completions": _steer_chat}


@pytest.fixture(scope="module")
def app(parts):  # noqa: ANN001, ANN201, F811
    limits = Limits(max_k=MAX_K, timeout_s=60)
    service = make_service(parts, reasons="template", limits=limits, **NO_KEYS)
    assert KNOWN_USER in service.users
    app = create_app(service)
    assert app.openapi() == schema.raw_schema, (
        "the served OpenAPI document differs from the fuzzed one"
    )
    yield app
    service.batcher.stop()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_api_conforms_to_its_openapi_document(case, app) -> None:  # noqa: ANN001
    case.call_and_validate(app=app)
