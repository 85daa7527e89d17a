"""Compiles the release pipeline (pipeline/release.py) for Kubeflow Pipelines v2.

On Kubeflow the main pipeline's HumanSignOff step opens the sign-off request and its pod ends: the
run ends awaiting sign-off and no pod waits for the person. The decision then starts one run of this
spec, its pipeline parameters being the request's values (TFX RuntimeParameters, compiled as the
spec's root input parameters `request_id`, `candidate_model_uri`, `eval_examples_uri`):

    import kfp
    from graceful import signoff
    from graceful.pipeline import release

    request = signoff.Store(config.sign_off_store).request(request_id)
    kfp.Client(host=KFP_HOST).create_run_from_pipeline_package(
        "graceful_release.yaml", arguments=release.values(request, config),
        run_name=f"release {request_id}", experiment_name="graceful")

— e.g. from `graceful slack-gate`'s on_decision, or after `graceful approve --no-release`.
Verified here: the spec compiles, loads with the kfp SDK and has those parameters (tests/kubeflow/
test_release_compile.py). Not verified here (no cluster): creating and running it on Kubeflow.

Compiled like the main pipeline (kubeflow/runner.py): the same image and pipeline settings
(`runner.kubeflow_config`) and the same runner options (KFP pipeline schema 2.1), under the main
pipeline's name, since the release must resolve the baseline within the pipeline's context; upload
it under its own name (`release.name`, e.g. `graceful_release`).

    python -m graceful.kubeflow.release --home gs://BUCKET/graceful \
        --metadata mysql://USER@HOST:3306/DATABASE --image REGISTRY/graceful-tfx:0.1.0
"""
from __future__ import annotations

import argparse
import dataclasses

from graceful.kubeflow import runner
from graceful.pipeline.configs import PipelineConfig


def compile_release(config: PipelineConfig, output: str,
                    image: str = runner.DEFAULT_IMAGE) -> dict:
    """Compiles the release pipeline of `config`'s pipeline with RuntimeParameters for the
    request's values, as the main pipeline is compiled (runner.compile_pipeline); returns
    {"json": path, "yaml": path, "seconds": compile time}."""
    from graceful.pipeline import release

    return runner.compile_pipeline(
        config, output, image,
        create=lambda adapted: release.create_release_pipeline(adapted,
                                                               release.runtime_parameters(adapted)))


def main(argv: list[str] | None = None) -> None:
    from graceful import project

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", default=None, metavar="PATH",
                        help="the project (graceful_project.py or its folder; default: the one "
                             "here, else the demo), compiled as `graceful compile kubeflow` does")
    parser.add_argument("--home", required=True, help="the pipeline home the runs use, e.g. "
                        "gs://BUCKET/graceful (pipeline root, serving directory, sign-off store)")
    parser.add_argument("--metadata", default=None, metavar="URL",
                        help="the ML Metadata (and sign-off) database the runs use, as compiled "
                             "with --metadata (default: the project's)")
    parser.add_argument("--name", default=None,
                        help="the main pipeline's name, as compiled with --name (default: the "
                             "project's)")
    parser.add_argument("--image", default=runner.DEFAULT_IMAGE,
                        help="the image built from kubeflow/Dockerfile (default %(default)s)")
    parser.add_argument("--output", default="graceful_release.json",
                        help="output path; writes .json and .yaml (default %(default)s)")
    args = parser.parse_args(argv)
    config = project.load(args.project).config
    config = dataclasses.replace(config, home=args.home,
                                 metadata=args.metadata or config.metadata,
                                 pipeline_name=args.name or config.pipeline_name)
    result = compile_release(config, args.output, args.image)
    print(f"[graceful] compiled the release pipeline of '{config.pipeline_name}' in "
          f"{result['seconds']:.1f}s: {result['yaml']} (for kfp.Client()."
          f"create_run_from_pipeline_package), {result['json']}")


if __name__ == "__main__":
    main()
