"""A Together job as ftm records a provider's job (`ftm import together`)."""

from __future__ import annotations

from ftmanager.hosted import JobRequest, ProviderJob

from .progress import hyperparameters, when

ASKED = ("n_epochs", "batch_size", "learning_rate_multiplier")
OPTIONS = ("training_type", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "warmup_ratio", "learning_rate")


def provider_job(job: dict, base_rate: float) -> ProviderJob:
    """A listed (or retrieved) job: its request as Together keeps it; progress read later."""
    resolved = hyperparameters(job, base_rate)
    method = (job.get("training_method") or {}).get("method")  # "sft" or "dpo", Together's words
    request = JobRequest(
        base_model=job.get("model") or "", method=method,
        hyperparameters={k: resolved[k] for k in ASKED if k in resolved},
        suffix=job.get("suffix") or None, seed=job.get("random_seed"), metadata={},
        training_file=job.get("training_file") or None, validation_file=job.get("validation_file") or None,
        options={k: resolved[k] for k in OPTIONS if k in resolved})
    return ProviderJob(job_id=job["id"], created_at=when(job.get("created_at")), request=request,
                       progress=None, status=job.get("status"), raw=job)


