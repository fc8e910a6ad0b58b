"""DARE's keep masks: what drawing them costs against merging the tile they mask, one run.

The full-size rehearsal's first pass (full_size.py) found DARE-TIES merges several times slower than
linear ones of the same size; the cause proved to be a merge on one thread (fixed), not the masks.
Each masked element costs one uniform draw from a seeded torch CPU generator
(merge_models.methods.sparsify.dare_keep), which is a serial Mersenne Twister. This prints, per
element of a 16M-element float32 block, the cost of that draw, of a multiply-add (what a linear merge
does per element), and of the same number of draws from numpy's PCG64 (a counter-free generator
that is also a pure function of its seed), with the ratios.

    python benchmarks/dare_mask_bench.py [--elements 16777216] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy
import torch

from merge_models.methods.sparsify import dare_keep


def best(function, repeats: int) -> float:
    """Fastest wall seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=1 << 24)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.elements
    out, a, b = torch.empty(n), torch.randn(n), torch.randn(n)
    draws = numpy.empty(n, dtype=numpy.float32)
    mask = best(lambda: dare_keep(torch.Size([n]), 0.2, 1234, out), args.repeats)
    axpy = best(lambda: a.mul_(0.9).add_(b, alpha=0.1), args.repeats)
    pcg = best(
        lambda: numpy.random.Generator(numpy.random.PCG64(1234)).random(out=draws, dtype=numpy.float32) < 0.2,
        args.repeats,
    )
    per = 1e9 / n
    print(f"torch threads {torch.get_num_threads()}, {n} elements, fastest of {args.repeats}")
    print(f"  dare_keep (torch CPU generator)  {mask * per:6.2f} ns/element")
    print(
        f"  multiply-add (linear merge)      {axpy * per:6.2f} ns/element   mask / multiply-add {mask / axpy:5.1f}x"
    )
    print(
        f"  numpy PCG64 draw + compare       {pcg * per:6.2f} ns/element   torch mask / PCG64  {mask / pcg:5.1f}x"
    )


if __name__ == "__main__":
    main()
