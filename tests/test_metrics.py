"""With metrics on, each Lambda log record is also a CloudWatch Embedded Metric Format (EMF) document:
a count named for its outcome and its duration, by function name, checked against the spec's rules."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from conftest import invoke, load_event, set_header, signed_event

from qstash_verify import Reason, _json_text, _LogRecord, _metrics

NOW_MS = 1_717_000_000_123
NAMESPACE = "QStash/orders"
FUNCTION = "orders-webhook"
# The units CloudWatch accepts (MetricDatum), as the spec's JSON schema lists them.
UNITS = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
]
MAX_METRICS, MAX_DIMENSIONS, MAX_VALUES, MAX_DOCUMENT_BYTES = 100, 30, 100, 1024 * 1024


def is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def metric_errors(definition: Any, root: dict[str, Any], seen: set[str]) -> list[str]:
    """A MetricDefinition: Name (and optional Unit, StorageResolution) naming a numeric root member, once."""
    if not isinstance(definition, dict) or not isinstance(definition.get("Name"), str):
        return [f"not a MetricDefinition: {definition!r}"]
    name, errors = definition["Name"], []
    errors += [f"extra member {key}" for key in set(definition) - {"Name", "Unit", "StorageResolution"}]
    errors += [f"{name}: bad unit"] if definition.get("Unit", "None") not in UNITS else []
    errors += [f"{name}: bad storage resolution"] if definition.get("StorageResolution", 60) not in (1, 60) else []
    errors += [f"{name}: name of 1-1024 characters"] if not 1 <= len(name) <= 1024 else []
    errors += [f"{name}: defined twice"] if name in seen else []
    value = root.get(name)
    values = value if isinstance(value, list) and len(value) <= MAX_VALUES else [value]
    errors += [f"{name}: value {value!r} is not numeric"] if not all(map(is_number, values)) else []
    seen.add(name)
    return errors


def directive_errors(directive: Any, root: dict[str, Any], seen: set[str]) -> list[str]:
    """A MetricDirective: Namespace, Dimensions (sets of string root members) and at most 100 Metrics."""
    if not isinstance(directive, dict) or set(directive) != {"Namespace", "Dimensions", "Metrics"}:
        return [f"a MetricDirective has exactly Namespace, Dimensions and Metrics: {directive!r}"]
    namespace, dimensions, metrics = directive["Namespace"], directive["Dimensions"], directive["Metrics"]
    errors = [] if isinstance(namespace, str) and 1 <= len(namespace) <= 1024 else [f"bad Namespace {namespace!r}"]
    if not isinstance(dimensions, list) or not dimensions:
        return [*errors, "Dimensions is a non-empty array of DimensionSets"]
    for dimension_set in dimensions:
        if not isinstance(dimension_set, list) or len(dimension_set) > MAX_DIMENSIONS:
            errors.append(f"a DimensionSet is an array of at most 30 keys: {dimension_set!r}")
            continue
        for key in dimension_set:
            value = root.get(key) if isinstance(key, str) and 1 <= len(key) <= 250 else None
            if not isinstance(value, str) or not 1 <= len(value) <= 1024:
                errors.append(f"dimension {key!r} is no root member with a string of 1-1024 characters")
    if not isinstance(metrics, list) or len(metrics) > MAX_METRICS:
        return [*errors, "Metrics is an array of at most 100 MetricDefinitions"]
    return errors + [error for definition in metrics for error in metric_errors(definition, root, seen)]


def emf_errors(text: str) -> list[str]:
    """What breaks the EMF specification's rules in the log event ``text``; none for a valid document."""
    root = json.loads(text)
    if len(text.encode()) > MAX_DOCUMENT_BYTES or not isinstance(root, dict):
        return ["the document is one JSON object of at most 1 MB"]
    metadata = root.get("_aws")
    if not isinstance(metadata, dict) or set(metadata) != {"Timestamp", "CloudWatchMetrics"}:
        return ["_aws holds exactly Timestamp and CloudWatchMetrics"]
    timestamp, directives = metadata["Timestamp"], metadata["CloudWatchMetrics"]
    errors = [] if type(timestamp) is int and timestamp > 10**12 else [f"Timestamp {timestamp!r} is not in ms"]
    if not isinstance(directives, list) or not directives:
        return [*errors, "CloudWatchMetrics is a non-empty array"]
    seen: set[str] = set()
    return errors + [error for directive in directives for error in directive_errors(directive, root, seen)]


def record(outcome: str, reason: str | None = None, duration_ms: float = 12.345) -> dict[str, Any]:
    """A log record as serve_lambda builds it (unsigned headers and context filled in)."""
    fields = dict.fromkeys(_LogRecord._fields)
    fields.update(status=200, outcome=outcome, reason=reason, message_id="msg_1", retried=0, door="function_url")
    fields.update(request_id="c0ffee", duration_ms=duration_ms)
    return _LogRecord(**fields)._asdict()


def document(log: dict[str, Any], function: str = FUNCTION) -> tuple[str, dict[str, Any]]:
    """The log line as printed with metrics on, and the members the metrics added."""
    added = _metrics(log, NAMESPACE, function, NOW_MS)
    return _json_text({**log, **added}), added


# Every outcome, and every rejection reason, with the metric it counts under.
OUTCOMES = [
    ("ok", None, "Handled"),
    ("bad_request", None, "BadRequest"),
    ("misconfigured", None, "Misconfigured"),
    ("handler_error", None, "HandlerError"),
    ("non_retryable", None, "NonRetryable"),
    ("retry_later", None, "RetryLater"),
    ("duplicate", None, "Duplicate"),
    ("in_progress", None, "InProgress"),
    ("dedup_unavailable", None, "StoreUnavailable"),
    ("rejected", "missing_signature", "Rejected.MissingSignature"),
    ("rejected", "malformed_token", "Rejected.MalformedToken"),
    ("rejected", "wrong_algorithm", "Rejected.WrongAlgorithm"),
    ("rejected", "bad_signature", "Rejected.BadSignature"),
    ("rejected", "invalid_claims", "Rejected.InvalidClaims"),
    ("rejected", "wrong_issuer", "Rejected.WrongIssuer"),
    ("rejected", "expired", "Rejected.Expired"),
    ("rejected", "not_yet_valid", "Rejected.NotYetValid"),
    ("rejected", "url_mismatch", "Rejected.UrlMismatch"),
    ("rejected", "body_mismatch", "Rejected.BodyMismatch"),
    ("rejected", "replayed", "Replayed"),
]


def test_every_rejection_reason_is_in_the_table() -> None:
    assert {reason for _, reason, _ in OUTCOMES if reason} == {reason.value for reason in Reason}


def test_every_outcome_counts_under_its_own_metric() -> None:
    names = [name for _, _, name in OUTCOMES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(("outcome", "reason", "name"), OUTCOMES)
def test_each_record_is_a_valid_emf_document(outcome: str, reason: str | None, name: str) -> None:
    log = record(outcome, reason)
    text, _ = document(log)
    assert emf_errors(text) == []
    printed = json.loads(text)
    (directive,) = printed["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["FunctionName"]]
    assert directive["Metrics"] == [{"Name": name, "Unit": "Count"}, {"Name": "Duration", "Unit": "Milliseconds"}]
    assert (printed["_aws"]["Timestamp"], printed["FunctionName"]) == (NOW_MS, FUNCTION)
    assert (printed[name], printed["Duration"]) == (1, log["duration_ms"])


@pytest.mark.parametrize(("outcome", "reason", "name"), OUTCOMES)
def test_metrics_never_shadow_or_change_a_member_of_the_record(outcome: str, reason: str | None, name: str) -> None:
    log = record(outcome, reason)
    for namespace in (NAMESPACE, "status", "duration_ms", "_aws"):
        added = _metrics(log, namespace, FUNCTION, NOW_MS)
        assert not set(added) & set(_LogRecord._fields)
        assert {**log, **added} == {**added, **log}


def test_without_a_function_name_the_metrics_have_no_dimension() -> None:
    text, _ = document(record("ok"), function="")
    assert emf_errors(text) == []
    assert json.loads(text)["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]


@pytest.mark.parametrize(
    ("change", "event"),
    [
        ("verified", signed_event("function_url")),
        ("malformed token", set_header(signed_event("http_api_v2"), "upstash-signature", "a.b.c")),
        ("unsigned", set_header(signed_event("alb"), "upstash-signature", None)),
        ("not http", {"Records": []}),
        ("rest api, stale token", load_event("rest_api")),
    ],
)
@pytest.mark.usefixtures("lambda_keys")
def test_the_records_serve_lambda_prints_become_valid_documents(
    change: str, event: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _, log = invoke(event, capsys)
    text, added = document(log)
    assert emf_errors(text) == [], change
    assert sum(value == 1 for key, value in added.items() if key not in ("Duration", "FunctionName")) == 1


# The validator itself: documents that break one rule each.
VALID = {
    "_aws": {
        "Timestamp": NOW_MS,
        "CloudWatchMetrics": [
            {"Namespace": "N", "Dimensions": [["F"]], "Metrics": [{"Name": "M", "Unit": "Count"}]},
        ],
    },
    "F": "fn",
    "M": 1,
}


def broken(path: str, value: Any) -> dict[str, Any]:
    """VALID with one member set (``value`` ...) or removed (``...`` as value), by a dotted path."""
    copy = json.loads(json.dumps(VALID))
    *parents, last = path.split(".")
    target = copy
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is ...:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return copy


@pytest.mark.parametrize(
    "invalid",
    [
        broken("_aws", ...),
        broken("_aws.Timestamp", ...),
        broken("_aws.Timestamp", "2024-06-01T00:00:00Z"),
        broken("_aws.Timestamp", 1_717_000_000),  # seconds
        broken("_aws.CloudWatchMetrics", []),
        broken("_aws.CloudWatchMetrics.0.Namespace", ""),
        broken("_aws.CloudWatchMetrics.0.Dimensions", []),
        broken("_aws.CloudWatchMetrics.0.Dimensions", [[f"D{i}" for i in range(31)]]),
        broken("F", ...),
        broken("F", 7),
        broken("M", ...),
        broken("M", "1"),
        broken("M", True),
        broken("M", [1] * 101),
        broken("_aws.CloudWatchMetrics.0.Metrics", [{"Name": f"M{i}"} for i in range(101)]),
        broken("_aws.CloudWatchMetrics.0.Metrics", [{"Name": "M"}, {"Name": "M"}]),
        broken("_aws.CloudWatchMetrics.0.Metrics.0.Unit", "ms"),
        broken("_aws.CloudWatchMetrics.0.Metrics.0.StorageResolution", 5),
        broken("_aws.CloudWatchMetrics.0.Metrics.0.Extra", 1),
    ],
)
def test_the_validator_finds_each_broken_rule(invalid: dict[str, Any]) -> None:
    assert emf_errors(json.dumps(VALID)) == []
    assert emf_errors(json.dumps(invalid)) != []


@pytest.mark.usefixtures("lambda_keys")
def test_with_a_namespace_the_lambda_log_line_is_an_emf_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, plain = invoke(signed_event("function_url"), capsys)
    assert "_aws" not in plain  # off unless asked for
    monkeypatch.setenv("QSTASH_METRICS_NAMESPACE", "QStash")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "receiver")
    for event, name in (
        (signed_event("function_url"), "Handled"),
        (load_event("function_url"), "Rejected.MissingSignature"),
    ):
        _, log = invoke(event, capsys)
        assert emf_errors(json.dumps(log)) == []
        assert (log[name], log["FunctionName"], log["_aws"]["CloudWatchMetrics"][0]["Namespace"]) == (
            1,
            "receiver",
            "QStash",
        )
        assert log["status"] in (200, 401)
