"""Benchmarks of kotaflow on the local stack, apart from the tests (they time things).

``kotaflow bench`` (:mod:`benchmarks.cli`) runs the scenarios listed in
:mod:`benchmarks.scenarios`; each scenario module can also be run on its own with
``uv run python -m benchmarks.<module> --help`` for finer control or profiling.
"""
