"""Training runs from a flat configuration, for ``meshprop train``, ``evaluate``, ``predict``
and ``reproduce``.

- :mod:`~meshprop.runs.config`: :class:`RunConfig` (fields documented for the command line),
  configuration files, :class:`ConfigError`;
- :mod:`~meshprop.runs.run`: :func:`run` (data, network, ``fit``, test metrics);
- :mod:`~meshprop.runs.artefacts`: the files of a run folder (:func:`write_run`);
- :mod:`~meshprop.runs.evaluation`: test metrics, evaluation data, predictions;
- :mod:`~meshprop.runs.summary`: what ``meshprop train`` prints;
- :mod:`~meshprop.runs.online_config`, :mod:`~meshprop.runs.online`,
  :mod:`~meshprop.runs.online_outputs`: ``meshprop online``'s configuration
  (:class:`~meshprop.runs.online_config.OnlineConfig`), experiment and files.
"""

from __future__ import annotations

from .artefacts import read_checkpoint, write_run
from .config import ConfigError, RunConfig, load_config_file
from .evaluation import predict_rows, prepare_eval_data, test_metrics
from .run import RunResult, build_net, load_data, run
from .summary import describe_model, summary_rows

__all__ = [
    "ConfigError",
    "RunConfig",
    "RunResult",
    "build_net",
    "describe_model",
    "load_config_file",
    "load_data",
    "predict_rows",
    "prepare_eval_data",
    "read_checkpoint",
    "run",
    "summary_rows",
    "test_metrics",
    "write_run",
]
