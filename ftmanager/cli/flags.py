"""Flags made from the backends' declared options, for `ftm submit` and `ftm rerun`.

Every backend's options become flags (`--lora-r 32`, `--no-quantize`), listed by backend in
`--help`; `-p key=value` stays the same thing in another spelling. They are made only when one
of those commands runs or shows its help, so `ftm runs` never loads a backend.
"""

from __future__ import annotations

import functools

from typer.core import TyperCommand, TyperOption  # typer vendors Click: its own classes, not click's

from ..errors import InvalidInput

_PREFIX = "backend_option__"  # the click name of a generated flag, apart from the command's own
_METAVARS = {int: "N", float: "X"}


@functools.cache
def declared() -> dict[str, dict]:
    """{backend: {option name: Option}} for every backend that loads (a broken plugin is skipped)."""
    from .. import registry

    found = {}
    for name in registry.names():
        try:
            found[name] = registry.load(name).declared_options()
        except Exception:  # noqa: BLE001  (`ftm backends` says why it does not load)
            continue
    return found


def _flag(name: str, options: list) -> TyperOption:
    """One flag for an option name, from every backend's declaration of it."""
    dashed = "--" + name.replace("_", "-")
    help_ = options[0][1].describe()
    if all(o[1].type is bool for o in options):
        return TyperOption(param_decls=[f"{dashed}/--no-{dashed[2:]}", _PREFIX + name], is_flag=True,
                           default=None, help=help_)
    return TyperOption(param_decls=[dashed, _PREFIX + name], default=None, help=help_,
                       metavar=_METAVARS.get(options[0][1].type, "TEXT"))


@functools.cache
def flags(taken: frozenset[str]) -> tuple[TyperOption, ...]:
    """The generated flags, leaving out any whose name a command flag already has."""
    by_name: dict[str, list] = {}
    for backend, options in declared().items():
        for name, option in options.items():
            by_name.setdefault(name, []).append((backend, option))
    made = (_flag(name, options) for name, options in sorted(by_name.items()))
    return tuple(f for f in made if not set(f.opts + f.secondary_opts) & taken)


class BackendFlags(TyperCommand):
    """A command that also takes every backend's options as flags; their values reach the
    callback as ctx.meta["backend_flags"] ({option name: value}, only those given)."""

    _own_only = False

    def _flags(self, ctx) -> tuple[TyperOption, ...]:
        own = super().get_params(ctx)
        return flags(frozenset(o for p in own for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])))

    def get_params(self, ctx):
        own = super().get_params(ctx)
        return own if self._own_only else own + list(self._flags(ctx))

    def parse_args(self, ctx, args):
        rest = super().parse_args(ctx, args)
        given = {p.name[len(_PREFIX):]: ctx.params.pop(p.name) for p in self._flags(ctx) if p.name in ctx.params}
        ctx.meta["backend_flags"] = {k: v for k, v in given.items() if v is not None}
        return rest

    def format_options(self, ctx, formatter) -> None:
        """The command's own options, then each backend's under its name."""
        self._own_only = True
        try:
            super().format_options(ctx, formatter)
        finally:
            self._own_only = False
        shown = {f.name[len(_PREFIX):]: f for f in self._flags(ctx)}
        for backend, options in declared().items():
            # a flag several backends take: each section says what it means there
            rows = [(shown[name].get_help_record(ctx)[0], option.describe())
                    for name, option in options.items() if name in shown]
            if rows:
                with formatter.section(f"Options of the {backend} backend (also -p key=value)"):
                    formatter.write_dl(rows)


def check_flags(given: dict, backend: str) -> None:
    """Refuse, in one line, a flag the chosen backend does not take."""
    takes = declared().get(backend)
    if takes is None:
        return  # an unknown or broken backend: submit says so itself
    for name in given:
        if name not in takes:
            owners = [b for b, options in declared().items() if name in options]
            known = ", ".join(_spelled(o, takes[o]) for o in takes) or "none"
            raise InvalidInput(f"{_spelled(name, declared()[owners[0]][name])} is an option of the "
                               f"{' and '.join(owners)} backend, not of {backend}",
                               f"Options {backend} takes: {known} (see `ftm submit --help`).")


def _spelled(name: str, option) -> str:
    dashed = name.replace("_", "-")
    return f"--{dashed}/--no-{dashed}" if option.type is bool else f"--{dashed}"
