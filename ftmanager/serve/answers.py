"""Chat answers from the model pool, as the front's Pieces and Done, with the pool's errors in OpenAI's words."""

from __future__ import annotations

from ..api.chat import Ask, Done, Piece
from ..api.state import ApiError
from ..errors import FtmError, InvalidInput

DEFAULT_MAX_TOKENS = 256  # the interim pool has no context cap of its own


def answer(pool, target, ask: Ask):
    """Pieces of one answer as the pool makes them, then Done; closing this stops the pool's row."""
    stream = _stream(pool, target, ask)
    try:
        for item in stream:
            if isinstance(item, str) or not hasattr(item, "finish_reason"):
                yield Piece(item if isinstance(item, str) else item.text, getattr(item, "logprobs", None))
                continue
            yield Done(item.text, item.prompt_tokens or 0, item.completion_tokens or 0, item.finish_reason)
            return
    except ApiError:
        raise
    except InvalidInput as err:
        raise ApiError(400, err.line(), param="messages", code="context_length_exceeded") from None
    except FtmError as err:
        raise ApiError(400, err.line(), param="model") from None
    finally:
        stream.close()


def _stream(pool, target, ask: Ask):
    try:
        from ftm_backends.local.pool import Ask as PoolAsk
    except ImportError:  # the interim pool: greedy or sampled text, nothing more
        return _interim(pool, target, ask)
    return pool.stream(PoolAsk(target=target, messages=ask.messages, max_tokens=ask.max_tokens,
                               temperature=ask.temperature, top_p=ask.top_p, stop=ask.stop,
                               logprobs=ask.logprobs, top_logprobs=ask.top_logprobs, seed=ask.seed))


def _interim(pool, target, ask: Ask):
    wanted = {"stop": bool(ask.stop), "logprobs": ask.logprobs, "top_p": ask.top_p != 1.0, "seed": ask.seed is not None}
    for name, on in wanted.items():
        if on:
            raise ApiError(400, f"Unsupported parameter: '{name}' is not supported by this server yet.",
                           param=name, code="unsupported_parameter")
    yield from pool.generate(target.base, target.adapter, ask.messages, ask.max_tokens or DEFAULT_MAX_TOKENS,
                             ask.temperature)
