"""Chat answers from the model pool, with the pool's errors in OpenAI's words."""

from __future__ import annotations

import logging
from dataclasses import replace

from ..asks import Ask
from ..engine import PromptTooLong
from ..errors import FtmError, InvalidInput
from ..front.state import ApiError

log = logging.getLogger("ftm.serve")


def answer(pool, target, ask: Ask, name: str = ""):
    """Pieces of one answer as the pool makes them, then Done; closing this stops the pool's row.
    name: the model the client asked for, named in a refusal (never the local model's path)."""
    stream = pool.stream(replace(ask, target=target))
    try:
        yield from stream
    except PromptTooLong as err:
        raise ApiError(400, err.line(), param="messages", code="context_length_exceeded") from None
    except InvalidInput as err:
        raise ApiError(400, err.line(), param=None) from None
    except (FtmError, OSError, ValueError) as err:  # it cannot be loaded: the detail names our paths
        log.warning("cannot answer with %s: %s", target, err.line() if isinstance(err, FtmError) else err)
        raise cannot_load(name) from None
    finally:
        stream.close()


def cannot_load(name: str) -> ApiError:
    """The 400 for a model whose weights this server cannot load, naming the row to fix."""
    from .table import WHERE, table

    row = f' (its row [models."{name}"] in {WHERE} names a model this server cannot load offline)' \
        if name in table() else ""
    return ApiError(400, f"The model '{name}' cannot be loaded on this server{row}; the server's log says why.",
                    param="model", code="model_not_available")
