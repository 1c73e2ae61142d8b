"""ftm: a fine-tuning manager. The library behind the `ftm` command.

    import ftmanager
    run = ftmanager.submit("examples/capitals.jsonl", backend="local", wait=True)
    ftmanager.show(run["id"])["metrics"]

Every CLI command is a call to one of these functions (see ftmanager.jobs).
"""

__version__ = "0.1.0"

_API = {  # public name -> the module that defines it
    **dict.fromkeys(["add_dataset", "dataset", "datasets", "export_dataset", "lineage"], "catalog"),
    **dict.fromkeys(["submit", "rerun", "refresh", "watch", "sync", "cancel", "pause", "resume",
                     "runs", "show", "models", "backends", "generate", "export", "pull"], "jobs"),
    "compare": "comparing",
    "plot": "comparing",
    "evaluate": "evaluation",
}


def __getattr__(name: str):
    # Lazy, so that `import ftmanager` (and so `ftm --help`) stays cheap.
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'ftmanager' has no attribute {name!r}")


def __dir__():
    return sorted([*_API, "__version__"])
