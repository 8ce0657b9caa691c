"""Package of the nightly batch recommendation job.

`pip install -e ".[dev]"` for development; Dataflow workers install it from
`--setup_file ./setup.py` (the sdist carries `recsys_core` and `jobs`).
"""

from setuptools import find_packages, setup

setup(
    name="recsys-nightly",
    version="0.1.0",
    description="Nightly batch recommendations: TFRS two-tower retrieval, ranking and DLRM, scored with Apache Beam",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["recsys_core", "recsys_core.*", "jobs", "jobs.*"]),
    py_modules=["train"],
    package_data={"recsys_core": ["schemas/*.json"]},
    # The commands, each also `python -m <module>` (or `python train.py`) from the repository root.
    entry_points={
        "console_scripts": [
            "recsys-train = train:main",
            "recsys-score = jobs.batch_recommend:main",
            "recsys-nightly = jobs.nightly:main",
            "recsys-report = recsys_core.report.figures:main",
        ]
    },
    install_requires=[
        # Verified together (GUIDE §3): ScaNN 1.4.2's ops are built for TF 2.20.
        "tensorflow==2.20.0",
        "tf-keras==2.20.1",
        "tensorflow-recommenders==0.7.7",
        "tensorflow-datasets==4.9.10",
        "apache-beam==2.77.0",
        "pyarrow>=16,<26",
        "numpy>=1.26,<3",
        "pandas>=2.2",
        "matplotlib>=3.8",
    ],
    extras_require={
        # `--index scann`: approximate top-K (numpy API; no TensorFlow ops needed).
        "scann": ["scann==1.4.2"],
        # Beam's GCP file systems and the Dataflow runner: gs:// paths and --runner DataflowRunner.
        "gcp": ["apache-beam[gcp]==2.77.0"],
        # The tests build a Dataflow job description offline and search with ScaNN: they need both extras.
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.6",
            "ruff>=0.6",
            "hypothesis>=6.100",
            "apache-beam[gcp]==2.77.0",
            "scann==1.4.2",
        ],
    },
)
