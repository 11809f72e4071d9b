"""``python -m utils.bench --json OUT [--quick] [--only NAMES] [--readme README.md]``.

Runs the measurements (see :mod:`utils.bench.harness`), prints a table, writes the JSON
report and, with ``--readme``, rewrites only the block between ``<!-- bench:start -->``
and ``<!-- bench:end -->`` of that Markdown file. A missing model or dataset gives
``null`` with a ``skipped`` reason, never a number.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from utils.bench.harness import MEASUREMENTS, build_report, resolve_names, run_child
from utils.bench.outcome import BenchOptions
from utils.bench.report import rewrite_readme, text_table, write_json
from utils.errors import TumorLensError
from utils.paths import SAVED_MODELS_DIR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m utils.bench", description=__doc__)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help=f"comma-separated measurements among {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument("--readme", type=Path, help="rewrite the bench block of this file")
    parser.add_argument("--models-dir", type=Path, default=SAVED_MODELS_DIR)
    parser.add_argument("--repeats", type=int, default=None, help="warm analysis repeats")
    parser.add_argument(
        "--classifier", default="ultrasound_classifier",
        help="ultrasound classifier bundle the analysis and throughput use",
    )  # fmt: skip
    parser.add_argument("--in-process", action="store_true", help="no subprocess per measurement")
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the warm analysis and exit"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 2 on bad arguments or a README without markers."""
    args = _parser().parse_args(argv)
    if args.child:
        print(run_child(args.child, BenchOptions.from_dict(json.loads(args.options))), flush=True)
        return 0
    if args.repeats is not None and args.repeats < 1:
        print("--repeats must be a positive integer.", file=sys.stderr)
        return 2
    options = BenchOptions(
        quick=args.quick,
        models_dir=args.models_dir,
        repeats=args.repeats,
        classifier=args.classifier,
    )
    if args.profile:
        from utils.bench.analyze import profile_analysis

        print(profile_analysis(options))
        return 0
    try:
        names = resolve_names(args.only)
        report = build_report(
            names,
            options,
            isolate=not args.in_process,
            progress=lambda message: print(message, file=sys.stderr, flush=True),
        )
        print(text_table(report))
        if args.json:
            write_json(args.json, report)
            print(f"wrote {args.json}", file=sys.stderr)
        if args.readme:
            rewrite_readme(args.readme, report)
            print(f"rewrote the bench block of {args.readme}", file=sys.stderr)
    except TumorLensError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
