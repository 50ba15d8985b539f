"""Levenberg–Marquardt against Adam on two small recurrent (NARX) problems, same iterations.

    PYTHONPATH=src python benchmarks/lm_vs_adam.py [--iterations 100] [--seeds 0 1 2]
        [--adam-lr 0.01 0.03 0.1] [--output lm_vs_adam.json]

Both problems use ``meshprop.diagram.examples.layered_narx`` (inputs x(k), x(k−1), x(k−2) and
the fed-back outputs y(k−1), y(k−2), one tanh hidden layer of 5, identity output: 36
parameters, built from gains, sums and functions as pyrenn builds its layers; the output
feedback is a tapped delay line placed directly on the loop with its tap 0 cut off) in float64
on one sequence of T = 300 steps, full batch, mean-squared error, and the next 300 steps for
the test error (the model runs on through the training input first, so the test continues from
its state):

- ``mackey-glass``: one-step prediction of the Mackey–Glass series (τ = 17, sampled every 1,
  ``meshprop.diagram.series``), x(k) = s(k), target s(k+1), standardised by the training part;
- ``narendra``: identification of the Narendra–Parthasarathy plant (1990, example 2)
  y(k+1) = y(k) y(k−1) (y(k) + 2.5) / (1 + y(k)² + y(k−1)²) + u(k), u uniform in [−2, 2],
  x(k) = u(k), target y(k+1) (scaled by the training part's standard deviation).

One LM iteration is one Jacobian (``mp.jacobian``) and one accepted step
(``meshprop.training.levenberg_marquardt``); one Adam iteration is one full-batch gradient step
(``mp.fit``, gradients by the reciprocal network).  Reported: NMSE = MSE / variance of the
target, on the training and the test sequence, per seed (the seed of the initial weights), after
the last iteration and at ``--checkpoints`` (train/test).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import meshprop as mp
from meshprop.diagram.examples import layered_narx
from meshprop.diagram.series import mackey_glass
from meshprop.threads import thread_policy
from meshprop.training import levenberg_marquardt

T = 300


def mackey_glass_task() -> tuple[torch.Tensor, ...]:
    s = mackey_glass(2 * T + 1)
    s = (s - s[:T].mean()) / s[:T].std()
    x, y = s[:-1], s[1:]
    return _split(x, y)


def narendra_task(seed: int = 1234) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    u = rng.uniform(-2.0, 2.0, 2 * T)
    y = np.zeros(2 * T + 1)
    for k in range(1, 2 * T):
        y[k + 1] = y[k] * y[k - 1] * (y[k] + 2.5) / (1 + y[k] ** 2 + y[k - 1] ** 2) + u[k]
    scale = y[1 : T + 1].std()
    return _split(u / 2.0, y[1:] / scale)


def _split(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, ...]:
    def seq(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float64).reshape(-1, 1, 1)

    return seq(x[:T]), seq(y[:T]), seq(x[T : 2 * T]), seq(y[T : 2 * T])


TASKS = {"mackey-glass": mackey_glass_task, "narendra": narendra_task}


def nmse(model, x: torch.Tensor, y: torch.Tensor, warmup: torch.Tensor | None = None) -> float:
    """MSE / variance of y; with ``warmup``, the model first runs over it (the training input)
    so that the test sequence continues from the state it left, not from zero."""
    with torch.no_grad():
        if warmup is None:
            return float(((model.run(x) - y) ** 2).mean() / y.var())
        out = model.run(torch.cat([warmup, x]))[len(warmup) :]
        return float(((out - y) ** 2).mean() / y.var())


def run(
    task: str, seed: int, iterations: int, adam_lrs: list[float], checkpoints: list[int]
) -> list[dict]:
    x, y, x_test, y_test = TASKS[task]()
    rows = []
    for method in ["lm", *adam_lrs]:
        d = layered_narx(1, 5, 1, taps=2, seed=seed)
        curve: dict[str, list[float]] = {}

        def record(epoch: int, model, _record, curve=curve) -> None:
            if epoch in checkpoints:
                curve[str(epoch)] = [nmse(model, x, y), nmse(model, x_test, y_test, warmup=x)]

        start = time.perf_counter()
        if method == "lm":
            done = len(levenberg_marquardt(d, x, y, epochs=iterations, callback=record))
            name = "lm"
        else:
            history = mp.fit(
                d,
                (x, y),
                loss="mse",
                optimizer="adam",
                lr=float(method),
                epochs=iterations,
                batch_size=1,
                progress=False,
                evaluate_train=False,
                callback=record,
            )
            done, name = len(history), f"adam lr={float(method):g}"
        rows.append(
            {
                "task": task,
                "seed": seed,
                "method": name,
                "iterations": done,
                "train_nmse": nmse(d, x, y),
                "test_nmse": nmse(d, x_test, y_test, warmup=x),
                "curve": curve,
                "wall_s": time.perf_counter() - start,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--adam-lr", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--output", default="lm_vs_adam.json")
    args = parser.parse_args()
    rows = []
    with thread_policy(1):
        for task in args.tasks:
            for seed in args.seeds:
                rows += run(task, seed, args.iterations, args.adam_lr, args.checkpoints)
                for r in rows[-1 - len(args.adam_lr) :]:
                    print(
                        f"{r['task']:13s} seed {r['seed']}  {r['method']:14s} "
                        f"iters {r['iterations']:4d}  train NMSE {r['train_nmse']:.3e}  "
                        f"test NMSE {r['test_nmse']:.3e}  ({r['wall_s']:.1f} s)  "
                        + "  ".join(f"@{k}: {v[0]:.2e}/{v[1]:.2e}" for k, v in r["curve"].items()),
                        flush=True,
                    )
    with open(args.output, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
