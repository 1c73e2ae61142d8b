"""Fireworks' supervised fine-tuning and DPO jobs as ftm records a provider's job (`ftm import
fireworks`), and a dataset's file fetched back through its signed download URL."""

from __future__ import annotations

from pathlib import Path

from ftmanager.hosted import JobRequest, ProviderJob

from .dpo import job_ref
from .progress import BASE_LEARNING_RATE


def provider_job(job) -> ProviderJob:
    """A listed job (the SDK's SupervisedFineTuningJob, or a DpoJob read by dpo.as_job): its
    request; progress read later."""
    rate = job.learning_rate
    asked = {"n_epochs": job.epochs, "batch_size": job.batch_size_samples,
             "learning_rate_multiplier": rate / BASE_LEARNING_RATE if rate else None,
             "beta": getattr(job, "beta", None)}
    options = {"lora_r": job.lora_rank, "learning_rate": rate, "max_context_length": job.max_context_length}
    request = JobRequest(
        base_model=job.base_model or job.warm_start_from or "", method=getattr(job, "method", "supervised"),
        hyperparameters={k: v for k, v in asked.items() if v is not None}, metadata={},
        training_file=job.dataset or None, validation_file=job.evaluation_dataset or None,
        options={k: v for k, v in options.items() if v is not None})
    created = job.create_time.timestamp() if job.create_time else None
    return ProviderJob(job_id=job_ref(job.name), created_at=created, request=request,
                       progress=None, status=str(job.state) if job.state else None, raw=None)


def fetch(urls: dict[str, str], dest: Path) -> bool:
    """The one file of a dataset's signed URLs streamed to dest; False where none answers 200."""
    import httpx

    with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True) as http:
        for url in urls.values():
            with http.stream("GET", url) as answer, open(dest, "wb") as out:
                if answer.status_code != 200:
                    return False
                for chunk in answer.iter_bytes(1 << 20):
                    out.write(chunk)
            return True
    return False
