"""Runs the paper's targets (training, gradient sampling, evaluation, plots) as one resumable
command on Dask: a LocalCluster by default, a running scheduler (--scheduler) or a batch
cluster (--cluster slurm|pbs|sge|lsf). The work is dgp_snr.sweep; see its cli module.

    python experiments/sweep.py table_1 figure_1 --profile reduced
    python experiments/sweep.py all --profile smoke
    python experiments/sweep.py table_1 --profile paper --print
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Imported here, not at the top: Dask's spawned workers re-import this file, and must not
    # load TensorFlow (which the protocol's modules import) just to run subprocesses.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
    from dgp_snr.scripting import import_tensorflow_quietly

    import_tensorflow_quietly()  # the protocol's modules import it; without its start-up noise
    from dgp_snr.sweep.cli import main

    sys.exit(main())
