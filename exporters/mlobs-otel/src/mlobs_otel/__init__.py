"""OpenTelemetry exporter for mlobs (sink name ``otel``)."""

from mlobs_otel.sink import OtelSink, create_sink

__all__ = ["OtelSink", "create_sink"]
