"""Operations: the local stack, the demo, the fault drills, the live view and the README generators.

The top layer: it may import the core, the libraries and the services, never `benchmarks`.
"""
