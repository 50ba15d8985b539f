"""Online-learning tasks as streams: one definition for ``meshprop online``, ``meshprop
reproduce online``, the benchmark and Python users.

Each task is a function returning a :class:`TaskStream` (training stream, held-out stream,
metric, baselines, a description in words); task, function, metric, baselines:

- ``delayed-recall``: :func:`delayed_recall` (``delay``); accuracy; chance, majority class;
- ``copy``: :func:`copy_task` (``length`` K, ``delay``); accuracy; chance, majority class;
- ``adding``: :func:`adding_problem` (``length`` L); MSE; the training targets' mean;
- ``mackey-glass``: :func:`mackey_glass_task` (``horizon``, ``window``); NMSE; persistence,
  ridge AR(5);
- a CSV series: :func:`series_task` on :func:`load_series_column`; as mackey-glass.

A stream through :class:`meshprop.OnlineLearner`::

    task = mackey_glass_task(window=5, train_ticks=20_000)
    for x_t, y_t, m_t in zip(task.x_train.float(), task.y_train.float(), task.m_train):
        learner.step(x_t, y_t, m_t)
    y, _ = net.unroll(task.x_test.float())
    print(task.score(y), task.baselines)
"""

from __future__ import annotations

from .adding import adding_problem
from .baselines import (
    chance_accuracy,
    majority_accuracy,
    mean_mse,
    persistence_nmse,
    ridge_ar_nmse,
)
from .recall import copy_task, delayed_recall
from .series import load_series_column, mackey_glass_task, series_task
from .stream import METRICS, TaskStream, score

__all__ = [
    "METRICS",
    "TASKS",
    "TaskStream",
    "adding_problem",
    "chance_accuracy",
    "copy_task",
    "delayed_recall",
    "load_series_column",
    "mackey_glass_task",
    "majority_accuracy",
    "mean_mse",
    "persistence_nmse",
    "ridge_ar_nmse",
    "score",
    "series_task",
]

#: the built-in tasks by name, with their metric (a CSV series is scored like mackey-glass)
TASKS = {
    "delayed-recall": "accuracy",
    "copy": "accuracy",
    "adding": "mse",
    "mackey-glass": "nmse",
}
