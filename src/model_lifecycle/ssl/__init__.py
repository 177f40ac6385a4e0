"""Self-supervised objectives and the probes that measure what they learned."""
