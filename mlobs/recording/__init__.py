"""The process-wide recorder between the hooks and the sinks: sink workers, the memory
sampler, the exit flush, and the sinks of exporter packages (entry points).
"""
