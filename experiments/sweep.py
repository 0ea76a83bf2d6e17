"""Runs the paper's targets (training, gradient sampling, evaluation, plots) as one resumable
command on Dask: a LocalCluster by default, a running scheduler (--scheduler) or a batch
cluster (--cluster slurm|pbs|sge|lsf). The work is dgp_snr.sweep; see its cli module.

    python experiments/sweep.py table_1 figure_1 --profile reduced
    python experiments/sweep.py all --profile smoke
    python experiments/sweep.py table_1 --profile paper --print
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgp_snr.sweep.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
