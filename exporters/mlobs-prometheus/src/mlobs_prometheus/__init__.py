"""Prometheus exporter for mlobs (sink name ``prometheus``).

Importing it registers nothing anywhere: the sink makes its metrics on the registry it is
given (see :class:`PrometheusSink`).
"""

from mlobs_prometheus.labels import OVERFLOW_VALUE, LabelGuard
from mlobs_prometheus.settings import PrometheusSettings, settings_from_env
from mlobs_prometheus.sink import PrometheusSink, create_sink

__all__ = ["OVERFLOW_VALUE", "LabelGuard", "PrometheusSettings", "PrometheusSink",
           "create_sink", "settings_from_env"]
