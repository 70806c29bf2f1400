"""The parts of ``tools/gpu-check``: standard library only, since the GPU machine runs them with whatever
Python holds torch there, before any carried wheel is installed.

- :mod:`gpucheck.proc`: the clock, the step planner, commands run under a time limit;
- :mod:`gpucheck.setup`: carried wheels, Fashion-MNIST from its packed copies, the environment probe;
- :mod:`gpucheck.figures`: pytest's JUnit XML, the benchmarks' JSON, ``summary.md``;
- :mod:`gpucheck.notebooks`: which notebooks run next, and the child that executes one.
"""
