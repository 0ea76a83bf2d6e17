from setuptools import find_packages, setup

setup(
    name="dgp-snr",
    version="0.1.0",
    description=(
        "Importance-weighted variational inference for latent-variable deep Gaussian processes "
        "and the signal-to-noise ratio of its gradient estimators (GPflow 2 / TensorFlow 2)."
    ),
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["dgp_snr", "dgp_snr.*"]),
    install_requires=[
        "tensorflow==2.21.*",
        "tensorflow-probability==0.25.*",
        "tf-keras==2.21.*",
        "gpflow==2.11.*",
        "numpy>=1.26,<2",
        "scipy>=1.11",
        "pandas>=2.0",
        "matplotlib>=3.8",
        "sacred>=0.8.5",
        "tqdm>=4.66",
        "openpyxl>=3.1",
        "tensorboard==2.21.*",
        "dask[distributed]>=2024.1",
        "dask-jobqueue>=0.8",
        "sqlalchemy>=2.0",
        "psutil>=5.9",
    ],
    extras_require={
        # gpflux: the GPflux integration's tests run in CI (dgp_snr.integrations.gpflux)
        "test": ["pytest>=8", "black>=24", "ruff>=0.5", "gpflux==0.4.5"],
        # IWVI and DReG for GPflux models (dgp_snr.integrations.gpflux); 0.4.4 pins
        # tensorflow-probability<0.25, so it does not install beside ours
        "gpflux": ["gpflux==0.4.5"],
        # the CUDA build of TensorFlow, for a machine with an NVIDIA GPU (Linux)
        "cuda": ["tensorflow[and-cuda]==2.21.*"],
    },
    entry_points={
        "console_scripts": ["dgp-snr-data=dgp_snr.data.cli:main"],
    },
)
