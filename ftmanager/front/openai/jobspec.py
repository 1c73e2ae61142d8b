"""Checking a create-job request the way OpenAI does (400s with a param)."""

from __future__ import annotations

import time

from ...facts import RANGES, SEED_MAX, SUFFIX_MAX, out_of_range
from ..state import ApiError, Job, new_id


def job_from_request(srv, body: dict) -> Job:
    """A Job for a POST /fine_tuning/jobs body, or an ApiError naming the bad parameter."""
    model = _model(srv, body.get("model"))
    _refuse_integrations(body.get("integrations"))
    train = _training_file(srv, body.get("training_file"), "training_file")
    valid = _training_file(srv, body["validation_file"], "validation_file") if body.get("validation_file") else None
    method, requested = _hyperparameters(body, getattr(srv.service, "methods", ("supervised",)))
    return Job(
        id=new_id("ftjob-"), model=model, training_file=train.id, training_path=train.path,
        validation_file=valid.id if valid else None, validation_path=valid.path if valid else None,
        organization_id=srv.state.organization, created_at=time.time(),
        suffix=_suffix(body.get("suffix")), seed=_seed(body.get("seed")),
        metadata=_metadata(body.get("metadata")), requested=requested, method=method,
    )


def _model(srv, model) -> str:
    if not isinstance(model, str) or not model:
        raise ApiError(400, "Missing required parameter: 'model'.", param="model")
    model = srv.service.snapshot(model)  # fine-tunes are named after the snapshot, as OpenAI names them
    if srv.service.can_train_on(model):
        return model
    raise srv.service.unknown_model(model, 400)


def _training_file(srv, file_id, param: str):
    if not isinstance(file_id, str) or not file_id:
        raise ApiError(400, f"Missing required parameter: '{param}'.", param=param)
    f = srv.state.files.get(file_id)
    if f is None:
        raise ApiError(400, f"invalid {param}: {file_id}", param=param, code="invalid_file")
    if f.purpose != "fine-tune":
        raise ApiError(400, f"File {file_id} has purpose '{f.purpose}', not 'fine-tune'.",
                       param=param, code="invalid_file_purpose")
    return f


def _refuse_integrations(integrations) -> None:
    """Refused, never accepted and dropped: this server sends a job's metrics nowhere else."""
    if integrations in (None, []):
        return
    kinds = [i.get("type") for i in integrations if isinstance(i, dict)] if isinstance(integrations, list) else []
    named = "Weights & Biases" if "wandb" in kinds else ", ".join(map(str, kinds)) or "integrations"
    raise ApiError(400, f"Unsupported parameter: 'integrations' ({named}) is not supported by this server. "
                   "Leave it out and read the job's metrics events or its results file instead.",
                   param="integrations", code="unsupported_parameter")


def _suffix(suffix):
    if suffix is not None and (not isinstance(suffix, str) or not 1 <= len(suffix) <= SUFFIX_MAX):
        raise ApiError(400, f"'suffix' must be a string of 1 to {SUFFIX_MAX} characters.", param="suffix")
    return suffix


def _seed(seed) -> int:
    if seed is None:
        return int(time.time()) % (SEED_MAX + 1)  # OpenAI picks one and reports it
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        raise ApiError(400, f"'seed' must be an integer from 0 to {SEED_MAX}.", param="seed")
    return seed


def _metadata(metadata) -> dict | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise ApiError(400, "'metadata' must be an object of at most 16 pairs.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise ApiError(400, f"Invalid metadata entry {key!r}: keys are at most 64 characters, "
                           "values strings of at most 512.", param="metadata")
    return dict(metadata)


# Each method's hyperparameters beyond the common three (OpenAI's spec: DPO adds beta).
METHOD_SETTINGS = {"supervised": (), "dpo": ("beta",)}
COMMON = ("n_epochs", "batch_size", "learning_rate_multiplier")


def _hyperparameters(body: dict, methods: tuple[str, ...]) -> tuple[str, dict]:
    """(method type, hyperparameters as asked) from `method`, or the deprecated top level."""
    method = body.get("method") or {}
    if not isinstance(method, dict):
        raise ApiError(400, "'method' must be an object.", param="method")
    kind = method.get("type", "supervised") if method else "supervised"
    if not isinstance(kind, str) or kind not in METHOD_SETTINGS:
        raise ApiError(400, f"Invalid value for 'method.type': {_shown(kind)}. Expected 'supervised' or 'dpo'.",
                       param="method.type")
    if kind not in methods:
        raise ApiError(400, f"This server runs {' and '.join(methods)} fine-tuning only, not {kind!r}.",
                       param="method.type")
    if method:
        _only(method, ("type", kind), "method")
        inner = method.get(kind) or {}
        if isinstance(inner, dict):
            _only(inner, ("hyperparameters",), f"method.{kind}")
        hp = inner.get("hyperparameters") if isinstance(inner, dict) else inner
        hp, where = hp or {}, f"method.{kind}.hyperparameters"
    else:
        hp, where = body.get("hyperparameters") or {}, "hyperparameters"
    if not isinstance(hp, dict):
        raise ApiError(400, f"'{where}' must be an object.", param=where)
    names = (*COMMON, *METHOD_SETTINGS[kind])
    _only(hp, names, where)
    return kind, {name: _value(hp, name, where) for name in names}


def _only(given: dict, known: tuple[str, ...], where: str) -> None:
    """OpenAI's 400 for a key the object does not take (a key of another method's included)."""
    unknown = next((k for k in given if k not in known), None)
    if unknown is not None:
        shown = _shown(unknown, quoted=False)
        raise ApiError(400, f"Unrecognized request argument supplied: {where}.{shown}. "
                       f"'{where}' takes {', '.join(known)}.", param=f"{where}.{shown}")


def _value(hp: dict, name: str, where: str):
    value = hp.get(name, "auto")
    types = (int,) if RANGES[name][0] is int else (int, float)  # a whole number is a fine multiplier
    ok = value == "auto" or (isinstance(value, types) and not isinstance(value, bool)
                             and out_of_range(name, value) is None)
    if not ok:
        raise ApiError(400, f"Invalid value for {name}: {_shown(value)}.", param=f"{where}.{name}")
    return value


def _shown(value, quoted: bool = True) -> str:
    """A client's value in a message, cut short: a hostile one may be megabytes long."""
    text = repr(value) if quoted else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
