"""The paper's experiment grid as one resumable command on Dask (experiments/sweep.py).

tasks: the task list of a set of targets under a profile (from dgp_snr.protocol), each task's
state on disk and its estimated cost; runner: what a Dask worker runs (the project's own
command in a subprocess, logged); engine: the cluster (local, an address, or dask-jobqueue),
submission with dependencies and retries, progress and the summary; cli: the command line
(and the profile options that plot.py and report.py share).
"""
