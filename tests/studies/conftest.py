"""A finished three-method experiment (outputs made in-process) to build studies on."""
import pytest

from evalsite.experiment_config import parse_experiment_config
from evalsite.services.experiments import experiment_evaluate
from evalsite.services.generation import job_run
from generators.tiny import build_tiny_pbe
from tests.conftest import jobs_of

STUDY_EXPERIMENT = """
name = "{name}"
dataset = "demo"
seeds = [0]
num_inference_steps = 2
guidance_scale = 5.0
resolution = 64
batch_size = 6
metrics = []

[[methods]]
key = "copy_paste"
family = "copy_paste"

[[methods]]
key = "pbe_a"
family = "pbe"
checkpoint = "tiny/pbe"

[[methods]]
key = "pbe_b"
family = "pbe"
checkpoint = "tiny/pbe_seed1"
"""


@pytest.fixture(autouse=True)
def no_heartbeat_thread_writes(settings):
    """As in tests/evalsite: in-process jobs inside the test's transaction need no heartbeat thread."""
    settings.EVALSITE_HEARTBEAT_SECONDS = 3600


@pytest.fixture(scope="session")
def second_pbe(tiny_weights):
    return build_tiny_pbe(tiny_weights / "tiny" / "pbe_seed1", seed=1)


@pytest.fixture
def finished_experiment(demo_dataset, weights_dir, second_pbe):
    def make(name="rated"):
        experiment = experiment_evaluate(config=parse_experiment_config(STUDY_EXPERIMENT.format(name=name))).experiment
        for job in jobs_of(experiment):
            job_run(job_id=job.pk)
        return experiment

    return make
