"""Reading Prometheus exposition text in tests."""

from prometheus_client.parser import text_string_to_metric_families


def sample_sum(text: str | bytes, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``.

    Raises:
        AssertionError: no such sample (a renamed metric must not read as 0).
    """
    if isinstance(text, bytes):
        text = text.decode()
    values = [s.value for family in text_string_to_metric_families(text)
              for s in family.samples
              if s.name == name and labels.items() <= s.labels.items()]
    assert values, f"no sample {name}{labels or ''} in the exposition"
    return sum(values)
