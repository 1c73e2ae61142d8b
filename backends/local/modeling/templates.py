"""Prompt formats for base models without a chat template (GPT-2, OPT): alpaca and plain.

Each format is written as a Jinja chat template, so whatever renders a chat template writes it
the same way: the labels in encoding.encode (only the reply and its end-of-sequence token are
trained, as with a model's own template), encoding.prompt_text for generate, chat, eval and serve,
and the tokenizer saved beside a trained model (an exported model prompts itself with
`apply_chat_template` in the format it learned).

- alpaca: Stanford Alpaca's prompt. The system message, when there is one, is the instruction
  and each user message an input (`### Input:`); without one, each user message is the
  instruction. Each reply follows `### Response:` and ends with the end-of-sequence token.
- plain: the prompt (every non-assistant message, one per line), a separator, the completion,
  then the end-of-sequence token.

Light: no torch here.
"""

from __future__ import annotations

from ftmanager.errors import InvalidInput

NAMES = ("chat", "alpaca", "plain")  # "chat": the model's own chat template
AUTO = "alpaca"  # the format of a model without a chat template when none is asked for

PREAMBLE = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.")
PREAMBLE_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
                       "further context. Write a response that appropriately completes the request.")

# The prompt of each turn ends with one newline after text: a BPE tokenizer (GPT-2's) then
# splits the prompt alone exactly as it splits the prompt followed by its reply, so the tokens
# a model is prompted with at inference are the ones it was trained on. A blank line at the
# end ("\n\n") would be one token alone and two before a reply.
ALPACA = (
    "{%- set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else none -%}"
    "{%- if system is not none -%}"
    "{{ '" + PREAMBLE_WITH_INPUT + "\\n\\n### Instruction:\\n' + system }}"
    "{%- else -%}{{ '" + PREAMBLE + "' }}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}{{ '\\n\\n### Response:\\n' + m['content'] + eos_token }}"
    "{%- elif not (loop.first and system is not none) -%}"
    "{{ '\\n\\n### ' + ('Input' if system is not none or m['role'] == 'tool' else 'Instruction') + ':\\n'"
    " + m['content'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '\\n\\n### Response:\\n' }}{%- endif -%}"
)
SEPARATOR = "\\n\\n###\\n"
PLAIN = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}{{ '" + SEPARATOR + "' + m['content'] + eos_token }}"
    "{%- else -%}"
    "{{ ('\\n' if loop.previtem and loop.previtem['role'] != 'assistant' else '') + m['content'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '" + SEPARATOR + "' }}{%- endif -%}"
)
FORMATS = {"alpaca": ALPACA, "plain": PLAIN}


def source(tokenizer, name: str) -> str | None:
    """The Jinja template that writes prompts in format `name`; None: the tokenizer's own.

    "chat" on a tokenizer without a chat template (a bare base model asked for an answer)
    writes the format training would have picked for it.
    """
    if name == "chat":
        if tokenizer.chat_template:
            return None
        name = AUTO
    if name not in FORMATS:
        raise InvalidInput(f"unknown prompt template {name!r}", f"Use -p template= one of {', '.join(NAMES)}.")
    # The text is tokenized without special tokens: a model whose tokenizer starts every text
    # with BOS (OPT, Llama) gets it from the template, as chat templates do.
    return ("{{ bos_token }}" if _adds_bos(tokenizer) else "") + FORMATS[name]


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos] != tokenizer(
        "a", add_special_tokens=False)["input_ids"][:1]


def choose(tokenizer, asked: str) -> tuple[str, str | None]:
    """The format a run trains in for option template=asked, and what to tell the user about it."""
    own = bool(tokenizer.chat_template)
    if asked == "auto":
        if own:
            return "chat", None
        return AUTO, (f"The model has no chat template: prompts are written in the {AUTO} format "
                      f"(### Instruction / ### Response); -p template=plain writes prompt, separator, completion")
    if asked == "chat" and not own:
        raise InvalidInput("the model has no chat template, so -p template=chat cannot write its prompts",
                           "Use -p template=alpaca or -p template=plain (or leave template unset).")
    return asked, None
