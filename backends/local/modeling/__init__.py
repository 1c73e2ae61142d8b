"""What training and the engine share: finding and loading base models and saving what a run
trained (loading.py), turning conversations into tokens and labels (encoding.py), and the
prompt templates both write them in (templates.py)."""
