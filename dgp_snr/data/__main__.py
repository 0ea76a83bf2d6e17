"""``python -m dgp_snr.data ...``: the same as the ``dgp-snr-data`` command."""

from .cli import main

raise SystemExit(main())
