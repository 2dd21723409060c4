"""The commands a researcher runs outside the demo: `worker`, `evaluate --wait` with no
worker alive, and the demo account only where it is safe."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from evalsite.models import GenerationJob, JobStatus, Worker
from evalsite.services.jobs import job_claim
from evalsite.services.workers import worker_report, workers_alive
from evalsite.worker_process import plan_workers
from tests.conftest import jobs_of

pytestmark = pytest.mark.django_db


def test_worker_plan_one_process_per_gpu_and_a_cpu_worker():
    assert [(w.name, w.queues, w.env) for w in plan_workers([])] == [("worker", "gpu,cpu", {})]
    planned = plan_workers([0, 1])
    assert [(w.name, w.queues, w.env) for w in planned] == [
        ("gpu0", "gpu", {"CUDA_VISIBLE_DEVICES": "0"}),
        ("gpu1", "gpu", {"CUDA_VISIBLE_DEVICES": "1"}),
        ("cpu", "cpu", {"CUDA_VISIBLE_DEVICES": ""}),
    ]
    command = planned[0].command()
    assert command[command.index("-Q") + 1] == "gpu" and "--pool" in command and "gpu0@%h" in command


def test_worker_command_on_this_machine_starts_one_combined_worker(capsys):
    call_command("worker", dry_run=True)  # this machine has no GPU
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "-Q gpu,cpu" in lines[0] and "worker@%h" in lines[0]
    call_command("worker", dry_run=True, gpus="0,1")
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1", "CUDA_VISIBLE_DEVICES="]
    with pytest.raises(CommandError, match="--gpus 'x'"):
        call_command("worker", dry_run=True, gpus="x")


def test_workers_alive_reads_the_reports_on_the_database_clock(settings):
    worker_report(name="gpu0@host", queues="gpu", device="cuda")
    assert [w.name for w in workers_alive()] == ["gpu0@host"]
    Worker.objects.update(seen_at=timezone.now() - timedelta(seconds=3 * settings.EVALSITE_HEARTBEAT_SECONDS + 1))
    assert workers_alive() == []


def test_evaluate_wait_without_a_worker_says_so_and_requeues_a_dead_workers_jobs(
    make_experiment, tmp_path, settings, capsys, broker_env
):
    from tests.conftest import purge_queues

    purge_queues()
    settings.EVALSITE_HEARTBEAT_SECONDS = 0.2
    experiment = make_experiment(name="orphan")
    dead = jobs_of(experiment).first()
    job_claim(job_id=dead.pk, token="dead-worker")
    GenerationJob.objects.filter(pk=dead.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.EVALSITE_STALE_SECONDS + 5)
    )
    file = tmp_path / "orphan.toml"
    file.write_text(
        'name = "orphan"\ndataset = "demo"\nnum_inference_steps = 2\nresolution = 64\n'
        '[[methods]]\nkey = "copy_paste"\nfamily = "copy_paste"\n'
        '[[methods]]\nkey = "pbe_tiny"\nfamily = "pbe"\ncheckpoint = "tiny/pbe"\n'
    )
    with pytest.raises(CommandError, match="gave up waiting after 3 s"):
        call_command("evaluate", str(file), wait=True, timeout=3)
    err = capsys.readouterr().err
    assert "no worker is running" in err and "manage.py worker" in err and "make worker" in err
    dead.refresh_from_db()
    assert dead.status == JobStatus.QUEUED and "dead-worker went silent" in dead.error


def test_the_demo_account_is_made_only_on_the_embedded_database_or_when_asked(django_user_model):
    from evalsite.management.commands.demo import DEMO_PASSWORD, DEMO_USER, demo_user_ensure

    assert demo_user_ensure(create=False) is None
    assert not django_user_model.objects.filter(username=DEMO_USER).exists()
    user = demo_user_ensure(create=True)
    assert user.check_password(DEMO_PASSWORD) and user.is_staff


def test_the_demo_decides_by_the_database_it_runs_on(settings):
    """On a database named by DATABASE_URL the demo makes no account unless told to."""
    from evalsite.management.commands import demo

    settings.EMBEDDED_DATABASE = False
    assert demo.demo_user_should_be_created(create_user=False) is False
    assert demo.demo_user_should_be_created(create_user=True) is True
    settings.EMBEDDED_DATABASE = True
    assert demo.demo_user_should_be_created(create_user=False) is True
