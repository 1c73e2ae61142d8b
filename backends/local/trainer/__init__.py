"""Training on this machine: the detached worker (worker.py, launched by launch.py) runs train.py's
loop over batches (batching.py) with the run's options (options.py), and reports through the
run directory's files (rundir.py), which the backend's poll() reads."""
