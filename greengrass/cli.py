"""`lookout package ...`: build deployable packages of Lookout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lookout import __version__
from lookout.greengrass.package import DEFAULT_COMPONENT, DEFAULT_URI_BASE, PackageOptions, next_steps, package
from lookout.greengrass.recipe import project_root


def register(commands: argparse._SubParsersAction) -> None:
    package = commands.add_parser("package", help="build deployable packages (the Greengrass v2 component)")
    kinds = package.add_subparsers(dest="kind", metavar="KIND", required=True)
    gg = kinds.add_parser(
        "greengrass",
        help="the AWS IoT Greengrass v2 component: wheels, models, recipe with digests",
        description="Build the Greengrass component into DIR: DIR/recipes/ and DIR/artifacts/ as "
        "`greengrass-cli deployment create --recipeDir --artifactDir` expects, ready to upload to S3. "
        "Wheels are built for this machine's architecture; run again on the other architecture "
        "with the same --out to add its manifest.",
    )
    gg.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    gg.add_argument("--name", default=None, help="component name (default com.lookout.Device)")
    gg.add_argument(
        "--version",
        default=__version__,
        dest="component_version",
        help=f"component version, semver (default {__version__}); bump it for every cloud release",
    )
    gg.add_argument(
        "--uri-base",
        default=None,
        metavar="S3URI",
        help="where the artifacts will be uploaded, e.g. s3://my-bucket/lookout "
        "(URIs become S3URI/<name>/<version>/<file>)",
    )
    gg.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="model to ship (repeat; default: the configured detector and embedder)",
    )
    gg.add_argument("--model-dir", type=Path, default=None, help="model cache to take the models from")
    gg.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter whose version the wheels are built for (the device's python3 must match; default: this one)",
    )
    gg.add_argument(
        "--find-links",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="extra folder of wheels for pip (e.g. a cache of earlier builds)",
    )
    gg.add_argument("--no-index", action="store_true", help="do not use PyPI: only --find-links folders")
    gg.add_argument("--project", type=Path, default=None, help="Lookout source checkout (default: this one)")
    gg.set_defaults(func=_greengrass)


def _greengrass(args: argparse.Namespace) -> int:

    opts = PackageOptions(
        out=args.out,
        project=project_root(args.project),
        component_name=args.name or DEFAULT_COMPONENT,
        version=args.component_version,
        uri_base=args.uri_base or DEFAULT_URI_BASE,
        models=tuple(args.model),
        model_dir=args.model_dir,
        python=args.python,
        find_links=tuple(args.find_links),
        no_index=args.no_index,
    )
    print(
        f"packaging {opts.component_name} {opts.version} from {opts.project} into {opts.out} "
        "(building wheels for every dependency: the first run downloads ~150 MB)",
        flush=True,
    )
    result = package(opts)
    print(next_steps(result, opts))
    return 0
