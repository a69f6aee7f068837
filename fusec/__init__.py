"""fusec: a JIT kernel fusion compiler embedded in Python."""
