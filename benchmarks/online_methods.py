"""Cosine similarity of each online method's gradient to exact RTRL on random sparse meshes, and
its ticks per second beside plain inference (``meshprop.bench.online_methods``)::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/online_methods.py [--hidden 16 64 256]

prints a Markdown table (the one in docs/online.md, "Approximate online gradients")."""

from __future__ import annotations

import argparse
import os

from meshprop.bench.online_methods import compare_methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--degree", type=int, default=4)
    args = parser.parse_args()
    rows = compare_methods(hidden=args.hidden, length=args.length, degree=args.degree)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.length} elements, degree {args.degree}")
    print("| hidden | edges | method | cosine to RTRL | ticks/s ÷ inference ticks/s |")
    print("| ---: | ---: | --- | ---: | ---: |")
    for r in rows:
        ratio = r["ticks_per_second"] / r["inference_ticks_per_second"]
        print(f"| {r['hidden']} | {r['edges']} | {r['method']} | {r['cosine']:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
