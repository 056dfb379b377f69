"""Memory sampler helpers shared by the probe tests."""


def counting_sampler(interval_ms: float):
    """A sampler (GPU off) whose RSS readings are counted: (sampler, readings so far)."""
    from mlobs.probes.memory_sampler import MemorySampler
    sampler = MemorySampler(interval_ms, gpu=False)
    real_read, reads = sampler._read, []

    def counting_read():
        reads.append(1)
        return real_read()

    sampler._read = counting_read
    return sampler, reads
