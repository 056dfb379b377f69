"""Memory probes: this process's RSS and the sampler thread, and GPU memory (torch's
counters, NVML); none of them imports torch.
"""
