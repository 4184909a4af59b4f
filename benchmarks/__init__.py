"""Benchmarks for gradcheck_kit: a bug zoo, PyTorch's OpInfo samples, random programs and
the doc-size two-layer network, each measured beside `torch.autograd.gradcheck` and
`jax.test_util.check_grads` in the same run.

Run everything with `python -m benchmarks.run` (see `benchmarks/run.py` for options).
"""
