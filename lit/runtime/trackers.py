"""Optional experiment trackers (`train.loggers`), fed every record of metrics.jsonl.

- `tensorboard`: event files in `<run_dir>/tensorboard/` (torch's SummaryWriter; needs the
  `tensorboard` package). A resumed session purges the steps it redoes (`purge_step`), so
  a reader sees each step once.
- `mlflow`: one MLflow run per training session (needs `mlflow-skinny`), in the store named
  by MLFLOW_TRACKING_URI, else in `mlruns/` in the working directory (MLflow's file store,
  which works without a server; this module opts in to it with MLFLOW_ALLOW_FILE_STORE,
  which MLflow 3 otherwise asks for). The experiment is MLFLOW_EXPERIMENT_NAME, else the
  name of the folder that holds the run directory (the pipeline's experiment). MLflow's
  telemetry is off unless MLFLOW_DISABLE_TELEMETRY says otherwise: training stays offline.

Both packages are optional (`pip install 'lit-compress[tracking]'`) and imported only when
their tracker is asked for: `check_trackers` imports them at the start of a run, before
any file is written, and names the extra to install when one is missing. Each record is
logged at its step, its `epoch` (epoch-based phases) or `iteration` (iteration-based
ones); every finite number in it is a scalar of the same name.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from lit.config import ConfigError

# tracker name -> (module its import needs, the package that provides it)
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow-skinny"),
}
INSTALL_HINT = "pip install 'lit-compress[tracking]'"
TENSORBOARD_DIR = "tensorboard"


def check_trackers(names: Iterable[str]) -> None:
    """A ConfigError naming `train.loggers`, the tracker and the extra to install when a
    tracker is unknown or its package cannot be imported."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"config key 'train.loggers': expected names from {', '.join(TRACKERS)}, got {name!r}")
        module, package = TRACKERS[name]
        if name == "mlflow":
            _quiet_mlflow()
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"config key 'train.loggers' asks for {name}, but the {package} package is not installed ({err}): "
                f"{INSTALL_HINT} (or pip install {package}), or remove {name} from train.loggers"
            ) from None


def record_step(record: dict[str, Any]) -> int | None:
    """The step a record is logged at: its epoch, else its iteration."""
    for key in ("epoch", "iteration"):
        if isinstance(record.get(key), int):
            return record[key]
    return None


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """Every finite number of a record but its step (metrics.jsonl writes the others as null)."""
    step_key = "epoch" if "epoch" in record else "iteration"
    return {
        key: float(value) for key, value in record.items()
        if key != step_key and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def flat_params(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: numbers, strings and booleans as they are, anything
    else (null, lists, mappings with nothing under them) as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, sort_keys=True)
    return flat


class Trackers:
    """The trackers of one training session (none: every call does nothing).

    `config` is the resolved run config (logged as hyperparameters / params), `run_id` the
    run's content hash, `resume_step` the first step a resumed session logs (its earlier
    steps stay; later ones an interrupted session logged are dropped), None for a fresh run.
    """

    def __init__(self, names: Iterable[str] = (), run_dir: str | Path = ".", config: dict[str, Any] | None = None,
                 run_id: str = "", resume_step: int | None = None) -> None:
        self.names = list(names)
        check_trackers(self.names)
        self.backends: list[Any] = []
        run_dir = Path(run_dir)
        params = flat_params(config or {})
        try:
            for name in self.names:
                if name == "tensorboard":
                    self.backends.append(_TensorBoard(run_dir / TENSORBOARD_DIR, params, resume_step))
                elif name == "mlflow":
                    self.backends.append(_MLflow(run_dir, params, run_id, resume_step))
        except BaseException:
            self.close("FAILED")
            raise

    def log(self, record: dict[str, Any]) -> None:
        """Log a record's numbers at its step. A tracker that fails (a tracking server gone)
        is closed with a warning: the run and metrics.jsonl go on without it."""
        step = record_step(record)
        values = scalars(record)
        if step is None or not values:
            return
        for backend in list(self.backends):
            try:
                backend.log(values, step)
            except Exception as err:  # noqa: BLE001 - a tracker never stops training
                print(f"lit: warning: {type(backend).__name__.strip('_')} tracker failed at step {step} and is switched off: {err}",
                      file=sys.stderr, flush=True)
                self.backends.remove(backend)
                try:
                    backend.close("FAILED")
                except Exception:  # noqa: BLE001 - it has failed already
                    pass

    def close(self, status: str = "FINISHED") -> None:
        """Flush and close every tracker; `status` (FINISHED, FAILED, KILLED) ends an MLflow run.
        A tracker that fails to close is reported, not raised: it never hides the run's result
        (or the error that ended it)."""
        backends, self.backends = self.backends, []
        for backend in backends:
            try:
                backend.close(status)
            except Exception as err:  # noqa: BLE001
                print(f"lit: warning: {type(backend).__name__.strip('_')} tracker failed to close: {err}", file=sys.stderr, flush=True)


class _TensorBoard:
    def __init__(self, log_dir: Path, params: dict[str, Any], resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        earlier = sorted(log_dir.glob("events.out.tfevents.*")) if log_dir.is_dir() else []
        if resume_step is None:  # a fresh run: event files of an earlier attempt are stale
            for path in earlier:
                path.unlink()
            earlier = []
        # a resumed session: a restart marker at resume_step hides what the interrupted
        # session logged from there on (readers drop it), so every step shows once
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=resume_step if earlier else None)
        if not earlier:  # the run config once per run, as hyperparameters and as text
            for summary in hparams(params, {}):
                self.writer.file_writer.add_summary(summary)
            self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()), 0)
        self.writer.flush()

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # a reader (and a killed run) sees every record written

    def close(self, status: str) -> None:
        self.writer.close()


def _quiet_mlflow() -> None:
    """Before mlflow is imported: no telemetry (training stays offline) unless asked for."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def mlflow_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else `mlruns/` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (Path.cwd() / "mlruns").as_uri()


def _is_local_file_store(uri: str) -> bool:
    """A `file:` URI or a plain path (MLflow's file store), not a database or a server."""
    return uri.startswith("file:") or ("://" not in uri and not uri.startswith(("databricks", "sqlite:", "http")))


class _MLflow:
    def __init__(self, run_dir: Path, params: dict[str, Any], run_id: str, resume_step: int | None) -> None:
        _quiet_mlflow()
        uri = mlflow_tracking_uri()
        if _is_local_file_store(uri):  # MLflow 3 keeps its file store but asks for this opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        run_dir = run_dir.resolve()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or run_dir.parent.name or "lit"
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(name)
            except MlflowException:  # another run created it meanwhile
                experiment_id = self.client.get_experiment_by_name(name).experiment_id
        else:
            experiment_id = experiment.experiment_id
        tags = {"lit.run_dir": str(run_dir), "lit.run_id": run_id}
        if resume_step is not None:
            tags["lit.resumed_at_step"] = str(resume_step)  # one MLflow run per session: this one continues a run
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name, tags=tags).info.run_id
        items = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, stamp, step) for key, value in values.items()])

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)
