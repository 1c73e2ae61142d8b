"""Chat answers from the model pool, with the pool's errors in OpenAI's words."""

from __future__ import annotations

import logging
from dataclasses import replace

from ..asks import Ask
from ..engine import PromptTooLong
from ..errors import FtmError, InvalidInput
from ..front.state import ApiError

log = logging.getLogger("ftm.serve")


def answer(pool, target, ask: Ask):
    """Pieces of one answer as the pool makes them, then Done; closing this stops the pool's row."""
    stream = pool.stream(replace(ask, target=target))
    try:
        yield from stream
    except PromptTooLong as err:
        raise ApiError(400, err.line(), param="messages", code="context_length_exceeded") from None
    except InvalidInput as err:
        raise ApiError(400, err.line(), param=None) from None
    except FtmError as err:  # the model or its adapter cannot be loaded: the detail names our paths
        log.warning("cannot answer with %s: %s", target, err.line())
        raise ApiError(400, "This model cannot be loaded on this server; its log says why.", param="model",
                       code="model_not_available") from None
    finally:
        stream.close()
