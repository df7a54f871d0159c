"""The messages of ``envoy.service.metrics.v3.MetricsService``, built at import time.

The ``xds-protos`` wheel ships no ``envoy/service/metrics`` module (it would need
Prometheus' ``io/prometheus/client/metrics.proto``, which the wheel leaves out), and
``grpcio-tools`` is not a dependency. Protobuf's wire format knows field numbers and
types only, so these descriptors declare just the fields the daemon reads, with
Envoy's and Prometheus' numbers, in a private pool (no clash with a real copy of either
proto another library may register). Fields not declared here are skipped when parsing.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "METRICS_SERVICE",
    "STREAM_METRICS",
    "MetricType",
    "StreamMetricsMessage",
    "StreamMetricsResponse",
]

#: The gRPC service and method names Envoy's ``envoy.stat_sinks.metrics_service`` calls.
METRICS_SERVICE = "envoy.service.metrics.v3.MetricsService"
STREAM_METRICS = "StreamMetrics"

_PACKAGE = "reconciler.metrics.wire"
_F = descriptor_pb2.FieldDescriptorProto

# (message name, ((field name, number, type, label, message type or ""), ...)); numbers are the upstream protos'.
_MESSAGES: tuple[tuple[str, tuple[tuple[str, int, int, int, str], ...]], ...] = (
    ("Node", (("id", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""), ("cluster", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""))),
    ("Identifier", (("node", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Node"),)),
    (
        "LabelPair",
        (("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""), ("value", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, "")),
    ),
    ("Counter", (("value", 1, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL, ""),)),
    ("Gauge", (("value", 1, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL, ""),)),
    (
        "Bucket",
        (
            ("cumulative_count", 1, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
            ("upper_bound", 2, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL, ""),
        ),
    ),
    (
        "Histogram",
        (
            ("sample_count", 1, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
            ("sample_sum", 2, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL, ""),
            ("bucket", 3, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "Bucket"),
        ),
    ),
    (
        "Quantile",
        (("quantile", 1, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL, ""), ("value", 2, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL, "")),
    ),
    (
        "Summary",
        (
            ("sample_count", 1, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
            ("sample_sum", 2, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL, ""),
            ("quantile", 3, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "Quantile"),
        ),
    ),
    (
        "Metric",
        (
            ("label", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "LabelPair"),
            ("gauge", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Gauge"),
            ("counter", 3, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Counter"),
            ("summary", 4, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Summary"),
            ("timestamp_ms", 6, _F.TYPE_INT64, _F.LABEL_OPTIONAL, ""),
            ("histogram", 7, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Histogram"),
        ),
    ),
    (
        "MetricFamily",
        (
            ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
            ("type", 3, _F.TYPE_INT32, _F.LABEL_OPTIONAL, ""),
            ("metric", 4, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "Metric"),
        ),
    ),
    (
        "StreamMetricsMessage",
        (
            ("identifier", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "Identifier"),
            ("envoy_metrics", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "MetricFamily"),
        ),
    ),
    ("StreamMetricsResponse", ()),
)


class MetricType:
    """Prometheus' ``MetricType`` values (an enum on the wire; declared as int32 here, same encoding)."""

    COUNTER = 0
    GAUGE = 1
    SUMMARY = 2
    HISTOGRAM = 4


def _message_classes() -> dict[str, type[Any]]:
    file = descriptor_pb2.FileDescriptorProto(name="reconciler/metrics/wire.proto", package=_PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES:
        message = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")) for name, _ in _MESSAGES
    }


_CLASSES = _message_classes()
StreamMetricsMessage: type[Any] = _CLASSES["StreamMetricsMessage"]
StreamMetricsResponse: type[Any] = _CLASSES["StreamMetricsResponse"]
