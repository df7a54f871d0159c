"""Rollout state and decision records as JSON values, for the state store; and a state read back after a restart.

``*_to_json`` returns plain dicts and lists (``json.dumps`` them); ``*_from_json`` reads them back
to equal values and raises ``ValueError`` on anything it did not write. Mappings keyed by
dataclasses (weight tables, counts) become lists of entries, since JSON keys are strings.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from reconciler.model.common import Port, PortSelector
from reconciler.model.rolloutpolicy import Metric
from reconciler.model.virtualservice import Destination
from reconciler.rollout.analysis import CheckResult, Counts, Outcome
from reconciler.rollout.decide import Action, Phase, Record, RolloutState
from reconciler.rollout.plan import RouteRef, WeightTable

__all__ = [
    "record_from_json",
    "record_to_json",
    "restarted",
    "state_from_json",
    "state_to_json",
    "weights_from_json",
    "weights_to_json",
]


def restarted(state: RolloutState, *, now: float) -> RolloutState:
    """``state`` as a restarted daemon goes on with it: the same step, observed afresh.

    The step is served again from ``now`` and waits for every proxy to ACK it again, and its
    analysis window opens anew: the counts seen before the restart are gone with the process
    that held them, and a window opened then would judge the step on only part of its traffic.
    Failed analyses so far still count. An ended rollout is left as it ended.
    """
    if state.phase.ended:
        return state
    return dataclasses.replace(state, step_started_at=now, acked_at=None, window_start=None, over_max_looks=0)


def state_to_json(state: RolloutState) -> dict[str, Any]:
    return {
        "phase": state.phase.value,
        "step": state.step,
        "pre_rollout": weights_to_json(state.pre_rollout),
        "goal": weights_to_json(state.goal),
        "sha": state.sha,
        "step_started_at": state.step_started_at,
        "acked_at": state.acked_at,
        "window_start": state.window_start,
        "failures": state.failures,
        "over_max_looks": state.over_max_looks,
    }


def state_from_json(data: Any) -> RolloutState:
    with _reading("rollout state"):
        return RolloutState(
            phase=Phase(data["phase"]),
            step=_int(data["step"]),
            pre_rollout=weights_from_json(data["pre_rollout"]),
            goal=weights_from_json(data["goal"]),
            sha=_str(data["sha"]),
            step_started_at=_float(data["step_started_at"]),
            acked_at=_optional_float(data["acked_at"]),
            window_start=_optional_float(data["window_start"]),
            failures=_int(data["failures"]),
            over_max_looks=_int(data["over_max_looks"]),
        )


def record_to_json(record: Record) -> dict[str, Any]:
    return {
        "time": record.time,
        "sha": record.sha,
        "phase": record.phase.value,
        "action": record.action.value,
        "step": record.step,
        "weights": weights_to_json(record.weights),
        "counts": [
            {
                "destination": _destination_to_json(destination),
                "requests": counts.requests,
                "errors": counts.errors,
                "latency": [[bound, requests] for bound, requests in counts.latency.items()],
            }
            for destination, counts in record.counts.items()
        ],
        "checks": [
            {
                "metric": check.metric.value,
                "outcome": check.outcome.value,
                "statistic": check.statistic,
                "threshold": check.threshold,
                "message": check.message,
                "beyond_doubt": check.beyond_doubt,
                "low_traffic": check.low_traffic,
            }
            for check in record.checks
        ],
        "reason": record.reason,
    }


def record_from_json(data: Any) -> Record:
    with _reading("decision record"):
        counts = {
            _destination_from_json(entry["destination"]): Counts(
                requests=_int(entry["requests"]),
                errors=_int(entry["errors"]),
                latency=MappingProxyType({_float(bound): _int(n) for bound, n in entry["latency"]}),
            )
            for entry in data["counts"]
        }
        checks = tuple(
            CheckResult(
                metric=Metric(check["metric"]),
                outcome=Outcome(check["outcome"]),
                statistic=_optional_float(check["statistic"]),
                threshold=_float(check["threshold"]),
                message=_str(check["message"]),
                beyond_doubt=_bool(check["beyond_doubt"]),
                low_traffic=_bool(check["low_traffic"]),
            )
            for check in data["checks"]
        )
        return Record(
            time=_float(data["time"]),
            sha=_str(data["sha"]),
            phase=Phase(data["phase"]),
            action=Action(data["action"]),
            step=_int(data["step"]),
            weights=weights_from_json(data["weights"]),
            counts=MappingProxyType(counts),
            checks=checks,
            reason=_str(data["reason"]),
        )


def weights_to_json(weights: WeightTable) -> list[dict[str, Any]]:
    return [
        {
            "virtual_service": route.virtual_service,
            "route": route.route,
            "split": [[_destination_to_json(destination), weight] for destination, weight in split.items()],
        }
        for route, split in weights.items()
    ]


def weights_from_json(data: Any) -> WeightTable:
    with _reading("weight table"):
        table: dict[RouteRef, Mapping[Destination, int]] = {
            RouteRef(_str(entry["virtual_service"]), _int(entry["route"])): MappingProxyType(
                {_destination_from_json(destination): _int(weight) for destination, weight in entry["split"]}
            )
            for entry in data
        }
    return MappingProxyType(table)


def _destination_to_json(destination: Destination) -> dict[str, Any]:
    port = {"number": destination.port.number} if destination.port is not None else None
    return {"host": destination.host, "subset": destination.subset, "port": port}


def _destination_from_json(data: Any) -> Destination:
    subset, port = data["subset"], data["port"]
    selector = None if port is None else PortSelector(None if port["number"] is None else Port(_int(port["number"])))
    return Destination(host=_str(data["host"]), subset=None if subset is None else _str(subset), port=selector)


# JSON's types, checked: a row this code did not write must fail here, not later in a decision.


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Missing keys and wrong shapes of a stored ``what`` as the ``ValueError`` the readers promise."""
    try:
        yield
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a stored {what}: {error!r}") from error


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _float(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else _float(value)
