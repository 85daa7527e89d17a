"""graceful-tfx: a TFX pipeline that refuses model updates which break what the old model got right.

Install with the pinned stack (see constraints.txt and scripts/setup.sh):
    pip install -c constraints.txt -e .
"""
from setuptools import find_packages, setup

SUBPACKAGES = ["components", "pipeline", "models", "kubeflow", "schemas"]

KUBEFLOW = ["kfp==2.5.0", "kfp-pipeline-spec==0.2.2", "kfp-server-api==2.0.5"]
AIRFLOW = ["apache-airflow==2.10.3"]
BENCHMARKS = ["mnist1d==0.0.2.post1"]

setup(
    name="graceful-tfx",
    version="0.1.0",
    description="TFX pipeline with negative-flip-aware training, gating and human sign-off",
    python_requires=">=3.10,<3.11",
    # One import namespace, `graceful.*`, while the repository keeps the top-level folders users
    # asked for: each folder is mapped to a subpackage, so nothing else is installed at top level
    # (a TFX template project's own `pipeline/` and `models/`, or the Kubeflow SDK's `kubeflow`,
    # never collide with ours).
    packages=["graceful", *[f"graceful.{name}" for name in SUBPACKAGES],
              *[f"graceful.components.{name}" for name in find_packages("components")]],
    package_dir={f"graceful.{name}": name for name in SUBPACKAGES},
    package_data={"graceful.schemas": ["*.pbtxt"]},
    install_requires=[
        "tfx==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "tensorflow-data-validation==1.16.1",
        "tensorflow-model-analysis==0.47.1",
        "ml-metadata==1.16.0",
        "apache-beam==2.59.0",
        "slack_sdk",
        "pymysql",  # sign-off decisions and store checks on a MySQL/MariaDB metadata server
        "matplotlib",
        "setuptools<81",
    ],
    extras_require={
        "kubeflow": KUBEFLOW,
        "airflow": AIRFLOW,
        # benchmarks/training.py's second dataset, generated procedurally (mnist1d.data.make_dataset).
        "benchmarks": BENCHMARKS,
        # The tests cover every runner, run the notebooks headless and fuzz the Slack endpoint; the
        # test extra (setup.sh's default) also brings the benchmarks' dependencies.
        "test": ["pytest", "hypothesis", "import-linter", "nbclient", "nbformat", "ipykernel",
                 *KUBEFLOW, *AIRFLOW, *BENCHMARKS],
    },
    entry_points={"console_scripts": ["graceful=graceful.cli:main"]},
)
