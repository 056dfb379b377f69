"""Reading Prometheus exposition text in tests."""

from prometheus_client.parser import text_string_to_metric_families


def sample_sum(text: str | bytes, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 when none)."""
    if isinstance(text, bytes):
        text = text.decode()
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and labels.items() <= s.labels.items())
