"""Shared fixtures: isolated media and broker folders, tiny checkpoints, the demo
dataset, and real Celery worker processes pointed at the test database."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from evalsite.demo_data import build_demo_dataset
from evalsite.experiment_config import parse_experiment_config
from evalsite.services.datasets import dataset_import
from evalsite.services.experiments import experiment_evaluate
from evalsite.services.generation import job_run
from generators.tiny import build_all as build_tiny_checkpoints
from generators.tiny import build_tiny_pbe
from metrics.standins import build_all as build_metric_stand_ins


@pytest.fixture(scope="session")
def broker_env(tmp_path_factory):
    """Worker environment for the broker: the embedded filesystem broker gets a
    private folder per test session; a real broker (CI's Redis) has its queues purged."""
    from django.conf import settings

    from evalsite.celery import app

    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        folder = tmp_path_factory.mktemp("broker")
        options = {
            **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
        }
        for key in ("data_folder_in", "control_folder"):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
        app.conf.broker_transport_options = options
        return {"EVALSITE_BROKER_DIR": str(folder)}
    return {}


def purge_queues():
    from evalsite.celery import app

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in ("gpu", "cpu"):
            try:
                channel.queue_purge(queue)
            except Exception:
                pass  # the queue does not exist yet


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    build_tiny_checkpoints(folder / "tiny")
    build_metric_stand_ins(folder)
    return folder


@pytest.fixture(scope="session")
def demo_dataset_dir(tmp_path_factory) -> Path:
    return build_demo_dataset(tmp_path_factory.mktemp("demo") / "dataset")


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def weights_dir(settings, tiny_weights) -> Path:
    settings.EVALSITE_WEIGHTS_DIR = tiny_weights
    return tiny_weights


def database_url_for_workers() -> str:
    """The URL of the database this test runs on (the test database, not the one the
    environment names), so that worker processes see the test's committed rows."""
    from django.db import connection

    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgresql://{auth}{params.get('HOST') or '127.0.0.1'}:{params.get('PORT') or 5432}/{params['NAME']}"


class WorkerProcess:
    def __init__(self, env: dict, log_path: Path, name: str):
        from evalsite.worker_process import worker_command

        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            worker_command(name), env=env, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )

    def wait_ready(self, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            if b" ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def start_worker(transactional_db, settings, broker_env, tmp_path):
    """Start real `celery worker` processes on the test database and broker."""
    purge_queues()
    workers: list[WorkerProcess] = []

    def start(name: str = "test", **extra_env) -> WorkerProcess:
        env = {
            **os.environ,
            **broker_env,
            "DATABASE_URL": database_url_for_workers(),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "EVALSITE_WEIGHTS_DIR": str(settings.EVALSITE_WEIGHTS_DIR),
            "EVALSITE_DEVICE": "cpu",
            **{k: str(v) for k, v in extra_env.items()},
        }
        worker = WorkerProcess(env, tmp_path / f"worker-{name}-{len(workers)}.log", name)
        workers.append(worker)
        return worker.wait_ready()

    yield start
    for worker in workers:
        worker.stop()
    purge_queues()


TINY_EXPERIMENT = """
name = "{name}"
dataset = "demo"
seeds = {seeds}
num_inference_steps = {steps}
guidance_scale = 5.0
resolution = {resolution}
batch_size = {batch_size}
metrics = {metrics}

[[methods]]
key = "copy_paste"
family = "copy_paste"

[[methods]]
key = "pbe_tiny"
family = "pbe"
checkpoint = "{checkpoint}"
"""


@pytest.fixture
def demo_dataset(media_root, demo_dataset_dir):
    return dataset_import(path=demo_dataset_dir, name="demo").dataset


@pytest.fixture
def make_experiment(demo_dataset, weights_dir):
    def make(name="tiny", seeds=(0,), batch_size=4, checkpoint="tiny/pbe", steps=2, resolution=64,
             metrics=("clip_score", "fid")):
        text = TINY_EXPERIMENT.format(
            name=name, seeds=list(seeds), batch_size=batch_size, checkpoint=checkpoint, steps=steps,
            resolution=resolution, metrics=json.dumps(list(metrics)),
        )
        return experiment_evaluate(config=parse_experiment_config(text)).experiment

    return make


# A finished three-method experiment (outputs made in-process) to build human studies on.
THREE_METHODS = Path(__file__).resolve().parent.parent / "examples" / "tiny_three_methods.toml"


def three_methods_config(name: str) -> str:
    return THREE_METHODS.read_text().replace('name = "three-methods"', f"name = {json.dumps(name)}", 1)


@pytest.fixture(scope="session")
def second_pbe(tiny_weights):
    return build_tiny_pbe(tiny_weights / "tiny" / "pbe_seed1", seed=1)


@pytest.fixture
def finished_experiment(demo_dataset, weights_dir, second_pbe):
    """Makes a finished examples/tiny_three_methods.toml experiment: its jobs run in this process, not on a worker."""
    def make(name="rated"):
        experiment = experiment_evaluate(config=parse_experiment_config(three_methods_config(name))).experiment
        for job in jobs_of(experiment):
            job_run(job_id=job.pk)
        return experiment

    return make


def jobs_of(experiment, key: str | None = None):
    """The jobs an experiment waits on (jobs belong to methods, not experiments)."""
    from evalsite.selectors import experiment_jobs

    jobs = experiment_jobs(experiment)
    if key is not None:
        jobs = jobs.filter(method=experiment.methods.get(key=key).method)
    return jobs.order_by("id")


def outputs_of(experiment, key: str | None = None):
    from evalsite.selectors import experiment_outputs

    outputs = experiment_outputs(experiment)
    if key is not None:
        outputs = outputs.filter(method=experiment.methods.get(key=key).method)
    return outputs


def require_tool(command: str, what: str) -> str:
    """The path of `command`; a skip where it is missing, but a failure under CI=true,
    where CI installs it (.ci/run) and a skip would hide a broken install."""
    found = shutil.which(command)
    if found:
        return found
    message = f"{what} is not installed (`{command}` not on PATH)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI installs it, so this is a broken install")
    pytest.skip(message)
