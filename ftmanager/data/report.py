"""What validation found: problems per line, statistics, and their human rendering."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..facts import MIN_EXAMPLES

# A file with a problem on every line would otherwise hold one object per line in memory:
# keep this many of each code (the counts stay exact).
KEEP_PER_CODE = 100
SHOW_PER_CODE = 10

HINTS = {
    "invalid_json": "each line must be one complete JSON object",
    "content_after_array": "a JSON file holds one array: put every example inside it, or use JSONL",
    "invalid_utf8": "save the file as UTF-8",
    "too_few_examples": f"OpenAI refuses training files with fewer than {MIN_EXAMPLES} examples",
    "special_token": "OpenAI refuses literal control tokens; remove or reword them",
    "duplicate": "duplicates weigh those examples twice",
    "overlap": "examples in both training and validation sets inflate validation scores",
    "too_long": "OpenAI truncates these examples to the context limit",
    "few_examples": "50-100 examples are recommended for a noticeable effect",
}
ARRAY_HINTS = {  # a JSON array file: its records are array items, not lines
    "invalid_json": "the file must be one JSON array of objects: [{...}, {...}]",
    "invalid_utf8": "save the file as UTF-8 (nothing after the first bad byte can be read)",
}


@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based line in the file; None for the file as a whole
    code: str
    message: str


@dataclass
class Report:
    """The result of validate(): problems, statistics, and whether token counts are exact."""

    path: str
    format: str
    model: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # code -> every occurrence
    stats: dict = field(default_factory=dict)
    exact_tokens: bool = False
    array: bool = False  # the file is one JSON array (not JSONL)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def n_examples(self) -> int:
        return self.stats.get("examples", 0)

    def add(self, line: int | None, code: str, message: str, error: bool) -> None:
        """Record one problem (kept up to KEEP_PER_CODE per code, always counted)."""
        seen = self.counts.get(code, 0)
        self.counts[code] = seen + 1
        if seen < KEEP_PER_CODE:
            (self.errors if error else self.warnings).append(Problem(line, code, message))

    def n_errors(self) -> int:
        return sum(self.counts[code] for code in {p.code for p in self.errors})

    def first_problem(self) -> Problem:
        # a problem on a line says more than one about the whole file (e.g. "too few examples")
        return min(self.errors, key=lambda p: (p.line is None, p.line or 0))

    def first_error(self) -> str:
        first = self.first_problem()
        where = f"{self.path}:{first.line}" if first.line else self.path
        return f"{where}: {first.message}"

    def as_dict(self) -> dict:
        """JSON-able form (the shape of `ftm datasets validate --json`)."""
        return {
            "path": self.path,
            "format": self.format,
            "model": self.model,
            "ok": self.ok,
            "exact_tokens": self.exact_tokens,
            "counts": dict(self.counts),
            "errors": [asdict(p) for p in self.errors],
            "warnings": [asdict(p) for p in self.warnings],
            "stats": self.stats,
        }

    def render(self) -> str:
        """Human text: problems grouped by code with their lines, then the statistics."""
        n_err, n_warn = self.n_errors(), sum(self.counts.values()) - self.n_errors()
        head = f"{self.path}: {self.n_examples:,} examples ({self.format} format), "
        head += f"{n_err:,} error(s), {n_warn:,} warning(s)"
        out = [head]
        hints = {**HINTS, **ARRAY_HINTS} if self.array else HINTS
        out += _render_group("Errors", self.errors, self.counts, hints)
        out += _render_group("Warnings", self.warnings, self.counts, hints)
        out += _render_stats(self.stats)
        return "\n".join(out)


def _render_group(title: str, problems: list[Problem], counts: dict, hints: dict) -> list[str]:
    if not problems:
        return []
    out = [f"{title}:"]
    by_code: dict[str, list[Problem]] = {}
    for p in problems:
        by_code.setdefault(p.code, []).append(p)
    for code, group in by_code.items():
        hint = f" ({hints[code]})" if code in hints else ""
        out.append(f"  {code}: {counts[code]:,}{hint}")
        for p in group[:SHOW_PER_CODE]:
            out.append(f"    line {p.line}: {p.message}" if p.line else f"    {p.message}")
        if counts[code] > SHOW_PER_CODE:
            out.append(f"    ... and {counts[code] - SHOW_PER_CODE:,} more")
    return out


def _spread(d: dict | None) -> str:
    if not d:
        return "-"
    return f"p5 {d['p5']:,}  p50 {d['p50']:,}  p95 {d['p95']:,}  max {d['max']:,}  total {d['total']:,}"


def _render_stats(s: dict) -> list[str]:
    if not s:
        return []
    tok = s["tokenizer"]
    if s["exact_tokens"]:
        how = "exact"
    elif tok["wanted"]:
        how = f"ESTIMATE: {tok['wanted']} is not available offline, counted with {tok['used']}"
    else:
        how = f"ESTIMATE: counted with {tok['used']}, not the model's own tokenizer"
    m = s["messages_per_example"]
    limit = s["context_limit"]
    lines = [
        f"Statistics (model {s['model']}, tokens {how}):",
        f"  examples: {s['examples']:,}",
        f"  messages per example: min {m['min']}  p50 {m['p50']}  max {m['max']}",
        f"  tokens per example: {_spread(s['tokens'])}",
        f"  trained (assistant) tokens: {_spread(s['assistant_tokens'])}",
        f"  over the {limit:,}-token limit: {s['examples_over_limit']:,}" if limit else "  context limit: unknown",
        f"  epochs (auto): {s['n_epochs_auto']}",
        f"  billed tokens: {s['billed_tokens']:,}{'' if s['exact_tokens'] else ' (estimate)'}",
    ]
    price = s["price_per_1m_train"]
    if price is None:
        lines.append("  cost: unknown (no price for this model in models.toml)")
    else:
        lines.append(f"  cost: ${s['cost_usd']:,.2f} at ${price:g} per 1M training tokens")
    return lines
