"""Ranges of blocks over Python threads: the one home of how the lane-batched front ends (st.features_batch,
cmsis_q15.compute_patches) spread a batch over the cores.

over_threads(run, n_blocks, min_blocks) calls run(b0, b1) on contiguous, disjoint ranges covering [0, n_blocks):
one call when there are fewer than 2 * min_blocks blocks or Numba has one thread, else one range per thread
(up to numba.get_num_threads(); numba.set_num_threads lowers it), each of at least min_blocks blocks, on a pool
made once per size. The kernels release the GIL (nogil) and each block writes only its own outputs, so the
values never depend on the split. An exception in any range is raised in the caller. A parallel loop (prange)
would do the same at the cost of seconds of compile time on every first run.
"""
from emu import jit

_POOLS = {}


def _pool(n):
    pool = _POOLS.get(n)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor
        pool = _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="n6emu-blocks")
    return pool


def over_threads(run, n_blocks, min_blocks):
    n = max(1, min(jit.load().get_num_threads(), n_blocks // min_blocks))
    if n == 1:
        run(0, n_blocks)
        return
    cuts = [n_blocks * g // n for g in range(n + 1)]
    list(_pool(n).map(lambda g: run(cuts[g], cuts[g + 1]), range(n)))
