"""The operator's reconcile metrics: a run is counted by handler and result, timed, and a
run that did not finish names its reason."""

from __future__ import annotations

import asyncio

import pytest

from igbridge.operator import metrics
from igbridge.operator.problems import RetryLater, token_invalid


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (None, ("ok", None)),
        (token_invalid("Meta answered code 190"), ("spec_problem", "TokenInvalid")),
        (RetryLater("Genesys unavailable", 10.0), ("retry", "RetryLater")),
        (KeyError("metadata"), ("error", "KeyError")),
        (asyncio.CancelledError(), ("cancelled", None)),
    ],
)
def test_outcome_of_a_run(exc: BaseException | None, expected: tuple[str, str | None]) -> None:
    assert metrics.outcome(exc) == expected


def test_a_finished_run_counts_as_ok_and_is_timed() -> None:
    before = sample("igbridge_operator_reconciles_total", handler="resync", result="ok")
    timed = sample("igbridge_operator_reconcile_duration_seconds_count", handler="resync")
    with metrics.reconciling("resync"):
        pass
    assert sample("igbridge_operator_reconciles_total", handler="resync", result="ok") == (
        before + 1
    )
    assert sample("igbridge_operator_reconcile_duration_seconds_count", handler="resync") == (
        timed + 1
    )


def test_a_spec_problem_passes_through_and_counts_its_reason() -> None:
    before = sample("igbridge_operator_errors_total", reason="TokenInvalid")
    runs = sample("igbridge_operator_reconciles_total", handler="reconcile", result="spec_problem")
    problem = token_invalid("Meta answered code 190")
    with pytest.raises(type(problem)) as raised, metrics.reconciling("reconcile"):
        raise problem
    assert raised.value is problem
    assert sample("igbridge_operator_errors_total", reason="TokenInvalid") == before + 1
    assert (
        sample("igbridge_operator_reconciles_total", handler="reconcile", result="spec_problem")
        == runs + 1
    )


def test_build_info_names_the_installed_version() -> None:
    from igbridge.relay.version import VERSION

    assert sample("igbridge_build_info", version=VERSION) == 1
