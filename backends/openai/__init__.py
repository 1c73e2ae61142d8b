"""The OpenAI backend: upload once per account, create the job, then follow it through poll().

Talks to OPENAI_BASE_URL (default api.openai.com) with OPENAI_API_KEY through the official
SDK, imported only when a job is started or polled. Two things make it safe to interrupt:
every job carries metadata {"ftm_run_id": <our run id>}, and the create call is never
retried blindly (the SDK would, and a retried POST can create a second job whose id nobody
sees): after an ambiguous failure find() looks the job up by that metadata first.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress

from ftmanager.backend import Checkpoint, Event, Progress, RunSpec, Uploads
from ftmanager.errors import Refused
from ftmanager.facts import HYPERPARAMETERS, SUCCEEDED, auto_epochs, is_terminal
from ftmanager.hosted import HostedBackend, JobRequest, ProviderJob, env_number, price_per_1m, usd

from .sdk import FileWindow, metric, parse_results

__all__ = ["OpenAIBackend", "parse_results", "price_per_1m"]

KEY_ENV = "OPENAI_API_KEY"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
MULTIPART_THRESHOLD = 512 << 20  # files.create takes at most 512 MB; larger go through Uploads
PART_SIZE = 64 << 20  # the Uploads API's largest part
EVENTS_PAGE = 100


# The code of the 403 OpenAI answers on create since it began winding down fine-tuning.
WINDING_DOWN = "training_not_available"
ELSEWHERE = ("together", "fireworks", "azure", "local")  # where a run can go instead, best first


def rerun_commands(run_id: str) -> str:
    """The `ftm rerun` commands that send run_id to each other place installed here."""
    from ftmanager import registry

    names = set(registry.names())
    commands = [f"`ftm rerun {run_id} --backend {b}`" for b in ELSEWHERE if b in names]
    return ", ".join(commands[:-1]) + f" or {commands[-1]}" if len(commands) > 1 else "".join(commands)


def suffix_of(model: str | None) -> str | None:
    """The suffix a job was given, as its model's name keeps it (ft:BASE:ORG:SUFFIX:ID); the job
    object itself does not."""
    parts = (model or "").split(":")
    return (parts[3] or None) if len(parts) == 5 and parts[0] == "ft" else None


class OpenAIBackend(HostedBackend):
    """Fine-tuning jobs on OpenAI's API (or a server speaking it) through the official SDK."""

    name = "openai"
    description = "OpenAI's fine-tuning API (or any server speaking it, via OPENAI_BASE_URL)"
    default_model = "gpt-4o-mini-2024-07-18"
    # who answers, and where its key and address come from (Azure OpenAI's differ)
    provider, key_env, url_env, default_base_url = "OpenAI", KEY_ENV, "OPENAI_BASE_URL", DEFAULT_BASE_URL
    key_hint = " (and OPENAI_ORG_ID / OPENAI_PROJECT_ID)"
    timeout_env = "FTM_OPENAI_TIMEOUT"
    methods = ("supervised", "dpo")  # DPO: method.type "dpo", preference files, beta

    def __init__(self, *, multipart_threshold: int | None = None, part_size: int | None = None,
                 timeout: float | None = None, max_retries: int = 2):
        self.organization = os.environ.get("OPENAI_ORG_ID") or None
        self.project = os.environ.get("OPENAI_PROJECT_ID") or None
        super().__init__(timeout=timeout, max_retries=max_retries)
        self.multipart_threshold = multipart_threshold or env_number("FTM_OPENAI_MULTIPART_BYTES", MULTIPART_THRESHOLD)
        self.part_size = part_size or env_number("FTM_OPENAI_PART_BYTES", PART_SIZE)

    def account_of(self) -> str:
        return f"{self.where} org={self.organization or '-'} project={self.project or '-'}"

    # --- the SDK and its errors ------------------------------------------------------------

    def client_settings(self) -> dict:
        return {**super().client_settings(), "organization": self.organization, "project": self.project}

    def _denied(self, err, run_id: str | None) -> Refused:
        """A 403: on create, OpenAI's refusal to train for this organisation, with the way out."""
        if not run_id:
            return super()._denied(err, run_id)
        body = err.body if isinstance(getattr(err, "body", None), dict) else {}
        if body.get("code") == WINDING_DOWN:
            what = f"OpenAI no longer creates fine-tuning jobs for this organization (403 {WINDING_DOWN})"
        else:
            what = f"OpenAI refused to create the fine-tuning job (403 {body.get('code') or 'permission denied'})"
        return Refused(f"{what}: {self._said(err)}", f"Re-run it elsewhere from the same ledger: {rerun_commands(run_id)}.")

    # --- starting --------------------------------------------------------------------------

    def start(self, spec: RunSpec, uploads: Uploads) -> str:
        """Upload the data (once per account), then create the job tagged with our run id."""
        training = self._ensure_file(spec.training_file, spec.dataset_id, uploads, spec.run_id)
        validation = None
        if spec.validation_file:
            vid = spec.validation_dataset_id or f"{spec.dataset_id}-validation"
            validation = self._ensure_file(spec.validation_file, vid, uploads, spec.run_id)
        return self._create(spec, self._job_params(spec, training, validation))

    def _ensure_file(self, path, dataset_id: str, uploads: Uploads, run_id: str) -> str:
        """The file id of dataset_id at this account, uploaded only if it is not there yet."""
        def send() -> str:
            with self._refusals():
                return self.upload(path, f"ftm-{dataset_id[:16]}.jsonl")

        return self.upload_once(uploads, dataset_id, path, self._still_there, send)

    def _still_there(self, file_id: str) -> bool:
        f = self._found(lambda: self.client.files.retrieve(file_id))
        return f is not None and getattr(f, "status", None) != "error" and f.purpose == "fine-tune"

    def upload(self, path, filename: str) -> str:
        """Send a JSONL file for fine-tuning, streamed from disk; returns the file id."""
        size = os.path.getsize(path)
        if size > self.multipart_threshold:
            return self._upload_parts(path, filename, size)
        with open(path, "rb") as fh:
            return self.client.files.create(file=(filename, fh, "application/jsonl"), purpose="fine-tune").id

    def _upload_parts(self, path, filename: str, size: int) -> str:
        """The Uploads API: parts of at most part_size, each streamed from disk as it is sent."""
        uploads = self.client.uploads
        upload = uploads.create(bytes=size, filename=filename, mime_type="text/jsonl", purpose="fine-tune")
        try:
            part_ids = []
            for offset in range(0, size, self.part_size):
                with FileWindow(path, offset, min(self.part_size, size - offset)) as part:
                    part_ids.append(uploads.parts.create(upload.id, data=("part", part)).id)
            return uploads.complete(upload.id, part_ids=part_ids).file.id
        except BaseException:
            with suppress(Exception):  # best effort: an unfinished upload expires after an hour
                uploads.cancel(upload.id)
            raise

    def _job_params(self, spec: RunSpec, training: str, validation: str | None) -> dict:
        record = spec.hyperparameters
        hp = {k: v for k, v in record.to_dict().items() if k in (*HYPERPARAMETERS, *record.settings) and v != "auto"}
        params = {"model": spec.base_model, "training_file": training,
                  "method": {"type": record.method, record.method: {"hyperparameters": hp}},
                  "metadata": {"ftm_run_id": spec.run_id}}
        optional = {"validation_file": validation, "suffix": spec.suffix, "seed": spec.seed}
        params.update({k: v for k, v in optional.items() if v is not None})
        return params

    def _create(self, spec: RunSpec, params: dict) -> str:
        """POST the job; after an ambiguous failure, look for it before posting again."""
        jobs = self.client.with_options(max_retries=0).fine_tuning.jobs

        def create() -> str:
            with self._refusals(run_id=spec.run_id):
                return jobs.create(**params).id

        return self.create_once(create, self.find, spec.run_id)

    def find(self, run_id: str) -> str | None:
        """The job tagged with our run id, if one exists (the oldest, should there be several)."""
        found, after = None, None
        while True:
            with self._answered():
                page = self.client.fine_tuning.jobs.list(metadata={"ftm_run_id": run_id}, limit=100,
                                                         **({"after": after} if after else {}))
            for job in page.data:  # filtered here too, in case a server ignores the filter
                if (job.metadata or {}).get("ftm_run_id") == run_id:
                    found = job.id
            if not page.has_more or not page.data:
                return found
            after = page.data[-1].id

    # --- following -------------------------------------------------------------------------

    def poll(self, job_id: str, cursor: dict) -> Progress:
        """The job's status and everything new since cursor; nothing is consumed on failure."""
        with self._answered():
            job = self.client.fine_tuning.jobs.retrieve(job_id).to_dict()
        return self._caught_up(job, dict(cursor or {}))

    def _caught_up(self, job: dict, cursor: dict, every_checkpoint: bool = False) -> Progress:
        """What job (as just retrieved) has reported since cursor: events paged back to it, their
        metrics, checkpoints (asked for when announced, or always with every_checkpoint), results."""
        job_id = job["id"]
        with self._answered():
            events, cursor = self._new_events(job_id, cursor)
        status = job.get("status") or "unknown"
        metrics = [metric(e.data) for e in events if e.type == "metrics" and e.data and "step" in e.data]
        totals = [e.data["total_steps"] for e in events if e.type == "metrics" and (e.data or {}).get("total_steps")]
        if totals:
            cursor["total_steps"] = totals[-1]
        checkpoints = self._new_checkpoints(job_id, status, events, cursor, every_checkpoint)
        if status == SUCCEEDED and job.get("result_files") and not cursor.get("results_read"):
            metrics += self._results(job)
            cursor["results_read"] = True
        return self._progress(job, status, cursor, events, metrics, checkpoints)

    def _progress(self, job: dict, status, cursor, events, metrics, checkpoints) -> Progress:
        method = job.get("method") or {}
        hp = (method.get(method.get("type") or "") or {}).get("hyperparameters") or job.get("hyperparameters") or {}
        resolved = hp if hp and "auto" not in hp.values() else None
        error = job.get("error") or {}
        eta = job.get("estimated_finish")
        return Progress(
            status=status, cursor=cursor, events=events, metrics=metrics, checkpoints=checkpoints,
            hyperparameters=resolved, result_model=job.get("fine_tuned_model"),
            trained_tokens=job.get("trained_tokens"), actual_cost=self._cost(job),
            # an empty error object means no error (OpenAI sends one on healthy jobs)
            error=error if (error.get("code") or error.get("message")) else None,
            total_steps=cursor.get("total_steps"), eta_seconds=max(0.0, eta - time.time()) if eta else None,
            finished_at=job.get("finished_at") if is_terminal(status) else None,
        )

    def _new_events(self, job_id: str, cursor: dict) -> tuple[list[Event], dict]:
        """Events newer than the cursor, oldest first. The API lists newest first: page back
        with `after` until reaching the newest event the cursor has seen."""
        seen_id, seen_at, edge = cursor.get("last_event_id"), cursor.get("last_event_at"), set(cursor.get("edge_ids", ()))
        fresh, after = [], None
        while True:
            page = self.client.fine_tuning.jobs.list_events(job_id, limit=EVENTS_PAGE, **({"after": after} if after else {}))
            older = next((i for i, e in enumerate(page.data)
                          if e.id == seen_id or (seen_at is not None and e.created_at < seen_at)), None)
            fresh += page.data[:older]
            if older is not None or not page.has_more or not page.data:
                break
            after = page.data[-1].id
        unique = {e.id: e for e in reversed(fresh) if e.id not in edge}
        events = [Event(id=e.id, created_at=float(e.created_at), message=e.message, level=e.level or "info",
                        type=e.type or "message", data=e.data if isinstance(e.data, dict) else None)
                  for e in unique.values()]
        if events:
            newest = events[-1].created_at
            cursor.update(last_event_id=events[-1].id, last_event_at=int(newest),
                          edge_ids=[e.id for e in events if e.created_at == newest]
                          + (list(edge) if int(newest) == seen_at else []))
        return events, cursor

    def _new_checkpoints(self, job_id: str, status: str, events, cursor: dict, always: bool = False) -> list[Checkpoint]:
        """Checkpoints not yet reported, asked for only when an event or the end says so (or always)."""
        announced = always or any("checkpoint" in e.message.lower() for e in events)
        final = status == SUCCEEDED and not cursor.get("checkpoints_final")
        if not (announced or final):
            return []
        with self._answered():  # iterating the SDK's page follows every page
            listed = list(self.client.fine_tuning.jobs.checkpoints.list(job_id, limit=100))
        known = set(cursor.get("checkpoint_ids", ()))
        new = [c for c in reversed(listed) if c.id not in known]
        cursor["checkpoint_ids"] = sorted(known | {c.id for c in new})
        cursor["checkpoints_final"] = cursor.get("checkpoints_final") or final
        return [Checkpoint(step=c.step_number, model_id=c.fine_tuned_model_checkpoint,
                           metrics={k: v for k, v in metric(c.metrics.to_dict()).items() if k != "step"},
                           created_at=float(c.created_at)) for c in new]

    def _results(self, job: dict) -> list[dict]:
        """Step metrics from the results CSV (served plain or base64-encoded)."""
        rows = []
        for file_id in job.get("result_files") or []:
            try:
                raw = self._found(lambda f=file_id: self.client.files.content(f).read(), answered=True)
            except Refused:  # content refused (400 "Not allowed to download"): the events' metrics stay
                raw = None
            if raw is not None:  # else results deleted: the events' metrics stay
                rows += parse_results(raw)
        return rows

    def _cost(self, job: dict) -> float | None:
        return usd(job.get("trained_tokens"), self.price(job.get("model") or ""))

    # --- the account's existing jobs ---------------------------------------------------------

    def jobs(self, page: int = 100):
        """Every fine-tuning job in the account, newest first, a page read only when reached."""
        with self._answered():  # iterating the SDK's page follows every page (`after` the last id)
            for job in self.client.fine_tuning.jobs.list(limit=page):
                yield self._listed(job.to_dict())

    def caught_up(self, job: ProviderJob) -> ProviderJob:
        """job with everything it reported from its start (events, metrics, checkpoints)."""
        raw = job.raw or self._retrieved(job.job_id)
        return ProviderJob(job.job_id, job.created_at, job.request, self._caught_up(raw, {}, every_checkpoint=True),
                           status=job.status)

    def provider_job(self, job_id: str) -> ProviderJob:
        """One job of the account, as list_jobs gives it."""
        return self.caught_up(self._listed(self._retrieved(job_id)))

    def _retrieved(self, job_id: str) -> dict:
        with self._answered():
            return self.client.fine_tuning.jobs.retrieve(job_id).to_dict()

    def _listed(self, job: dict) -> ProviderJob:
        method = job.get("method") or {}
        kind = method.get("type")
        asked = (method.get(kind) or {}).get("hyperparameters") if kind else None
        request = JobRequest(
            base_model=job.get("model") or "", method=kind, hyperparameters=asked or job.get("hyperparameters") or {},
            suffix=suffix_of(job.get("fine_tuned_model")), seed=job.get("seed"), metadata=job.get("metadata") or {},
            training_file=job.get("training_file"), validation_file=job.get("validation_file"))
        created = job.get("created_at")
        return ProviderJob(job_id=job["id"], created_at=float(created) if created is not None else None,
                           request=request, progress=None, status=job.get("status"), raw=job)

    # --- the rest of the contract ------------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        with self._answered():
            self.client.fine_tuning.jobs.cancel(job_id)

    def pause(self, job_id: str) -> None:
        with self._answered():
            self.client.fine_tuning.jobs.pause(job_id)

    def resume(self, job_id: str, spec: RunSpec) -> str | None:
        with self._answered():
            self.client.fine_tuning.jobs.resume(job_id)
        return None  # the same job carries on

    def resolve(self, spec: RunSpec) -> dict:
        """n_epochs as OpenAI's "auto" will choose it; batch size and rate stay the provider's."""
        return spec.hyperparameters.resolved(**({"n_epochs": auto_epochs(spec.n_examples)} if spec.n_examples else {}))

    def generate(self, result_model: str | None, result_path: str | None, base_model: str,
                 conversations: list[list[dict]], max_new_tokens: int = 256) -> list[str]:
        """Answer each conversation with chat completions on the ft: model (or the base model).

        Requests go out a few at a time: one HTTP round trip each, so threads overlap the waiting.
        """
        from concurrent.futures import ThreadPoolExecutor

        model = result_model or base_model

        def ask(messages: list[dict]) -> str:
            with self._answered():
                reply = self.client.chat.completions.create(model=model, messages=messages, temperature=0,
                                                            max_completion_tokens=max_new_tokens)
            return reply.choices[0].message.content or ""

        with ThreadPoolExecutor(max_workers=min(8, len(conversations) or 1)) as pool:
            return list(pool.map(ask, conversations))
