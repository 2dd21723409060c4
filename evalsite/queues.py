"""Queue and task names: the one place they are spelled. Task names are stable (messages
already in a broker carry them); never rename them."""

GPU_QUEUE = "gpu"  # generation: one worker process per GPU
CPU_QUEUE = "cpu"  # everything else: metrics (features on the worker's device), the sweep

GENERATE_JOB = "evalsite.generate_job"
SWEEP_STALE_JOBS = "evalsite.sweep_stale_jobs"
COMPUTE_METRICS_JOB = "evalsite.compute_metrics_job"
FINE_TUNE_JOB = "evalsite.fine_tune_job"

TASK_ROUTES = {GENERATE_JOB: {"queue": GPU_QUEUE}, FINE_TUNE_JOB: {"queue": GPU_QUEUE},
               COMPUTE_METRICS_JOB: {"queue": CPU_QUEUE}}
