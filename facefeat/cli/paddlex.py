"""PaddleX's pipeline command line (``facefeat --pipeline face_recognition --input img.jpg ...``) and
``facefeat get-pipeline-config``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from facefeat.cli.output import Output, drain, escape, positive_int
from facefeat.cli.table import COMMANDS, command
from facefeat.errors import ConfigError, FacefeatError, InputError
from facefeat.utils import atomic_write_text


def _get_pipeline_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline name (face_recognition)")
    p.add_argument("--save_path", "--save-path", dest="save_path", default=".",
                   help="directory (gets <name>.yaml) or .yaml file to write (default: .)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")


@command("get-pipeline-config", "write a pipeline's config YAML to edit (PaddleX --get_pipeline_config)",
         _get_pipeline_config_args)
def cmd_get_pipeline_config(args: argparse.Namespace) -> int:
    from facefeat.config import pipeline_config_path

    src = pipeline_config_path(args.pipeline)
    if src is None:
        from facefeat.pipeline import PIPELINES

        raise ConfigError(f"unknown pipeline {args.pipeline!r}; available: {', '.join(PIPELINES)}")
    target = Path(args.save_path)
    if target.suffix.lower() not in (".yaml", ".yml"):
        target = target / src.name
    if target.exists() and not args.overwrite:
        raise InputError(f"{target} already exists; pass --overwrite to replace it")
    atomic_write_text(target, src.read_text(encoding="utf-8"))
    Output.of(args).document({"saved": str(target)}, f"The pipeline config has been saved to: {escape(target)}")
    return 0


def _paddlex_pipeline_parser() -> argparse.ArgumentParser:
    """PaddleX's pipeline CLI: ``facefeat --pipeline face_recognition --input img.jpg --index DIR ...``."""
    p = argparse.ArgumentParser(prog="facefeat", description="Run a pipeline, as PaddleX's CLI does.")
    p.add_argument("--pipeline", help="pipeline name (face_recognition) or config .yaml")
    p.add_argument("--input", help="image, directory or URL")
    p.add_argument("--save_path", default=None, help="directory for <image>_res.json and <image>_res.jpg")
    p.add_argument("--device", default=None, help="cpu, gpu:0, ...")
    p.add_argument("--index", default=None, help="saved index directory (facefeat index build)")
    p.add_argument("--det_threshold", type=float, default=None)
    p.add_argument("--rec_threshold", type=float, default=None)
    p.add_argument("--rec_topk", type=positive_int, default=None)
    p.add_argument("--get_pipeline_config", default=None, help="write this pipeline's config to --save_path")
    for name in ("--engine", "--hpi_config"):  # PaddleX options without meaning here
        p.add_argument(name, default=None, help="accepted for PaddleX compatibility; ignored")
    p.add_argument("--use_hpip", action="store_true", help="accepted for PaddleX compatibility; ignored")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def is_paddlex_pipeline_cli(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is PaddleX's pipeline command line (``--pipeline``/``--get_pipeline_config``
    before any subcommand)."""
    for a in argv:
        if a in COMMANDS:
            return False
        if a.split("=", 1)[0] in ("--pipeline", "--get_pipeline_config"):
            return True
    return False


def paddlex_pipeline_main(argv: Sequence[str]) -> int:
    """Run PaddleX's pipeline command line: JSON lines per result, as ``res.print(json_format=True)``."""
    from facefeat.pipeline import create_pipeline

    args = _paddlex_pipeline_parser().parse_args(argv)
    if args.get_pipeline_config:
        return cmd_get_pipeline_config(argparse.Namespace(
            pipeline=args.get_pipeline_config, save_path=args.save_path or ".", overwrite=False))
    if not args.pipeline or not args.input:
        raise FacefeatError("--pipeline and --input are both needed (e.g. --pipeline face_recognition --input img.jpg)")
    pipe = create_pipeline(args.pipeline, device=args.device)
    out, failures = Output(json_mode=True), []
    for res in pipe.predict(args.input, index=args.index, det_threshold=args.det_threshold,
                            rec_threshold=args.rec_threshold, rec_topk=args.rec_topk, failures=failures):
        drain(out, failures)
        out.record({"res": res.json["res"]})  # JSON lines, as PaddleX's res.print(json_format=True)
        if args.save_path:
            res.save_all(args.save_path)
    drain(out, failures)
    return out.finish()


__all__ = ["cmd_get_pipeline_config", "is_paddlex_pipeline_cli", "paddlex_pipeline_main"]
