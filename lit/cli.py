"""The `lit` command line: parse, call one function, exit with a clear message on error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

VERBS_HELP = """\
verbs:
  train         train a teacher or a scratch model, or distil a student (kd, lit) from a teacher
  tune          choose tau, then alpha (KD), then beta (LIT) on validation accuracy -> tuned.json
  evaluate      test accuracy, parameters, FLOPs, latency and throughput of a run -> eval.json
  prepare-data  download and cache a config's data set (the only step that needs the network)
  show-config   print a config fully resolved, with its defaults and overrides
  train-gan     train a StarGAN teacher (generator and discriminator)
  distill-gan   LIT-distil a StarGAN generator with fewer residual blocks from a teacher run
  evaluate-gan  FID, parameters, FLOPs and latency of a generator run -> eval.json, samples.png
  aggregate     gather run directories into one tidy table (CSV)
  report        figures and tables from an aggregated table

Each config-reading verb takes a YAML run config and `key=value` overrides, e.g.
  lit train config/runs/digits-teacher.yaml model.depth=56 --run-dir runs/teacher
"""


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="YAML run config")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted-key overrides, values read as YAML")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit", description="Compress deep networks with LIT, KD and from-scratch baselines.",
        epilog=VERBS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    train = verbs.add_parser("train", help="train or distil a model into a run directory")
    _config_args(train)
    train.add_argument("--run-dir", type=Path, required=True, help="where the run's files go")
    train.add_argument("--resume", action="store_true", help="continue the run directory's training state if it has one")

    tune = verbs.add_parser("tune", help="tune tau, alpha and beta on validation accuracy (never the test split)")
    _config_args(tune)
    tune.add_argument("--teacher", type=Path, required=True, help="the teacher's run directory")
    tune.add_argument("--out-dir", type=Path, required=True, help="where trials, tuning.csv, tuning.png and tuned.json go")
    tune.add_argument("--temperatures", type=float, nargs="+", default=[], help="tau grid (KD; absent: the config's value)")
    tune.add_argument("--hard-weights", type=float, nargs="+", default=[], help="alpha grid (KD; absent: the config's value)")
    tune.add_argument("--kd-weights", type=float, nargs="+", default=[], help="beta grid (LIT; absent: the config's value)")

    evaluate = verbs.add_parser("evaluate", help="evaluate a run directory into its eval.json")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--device", action="append", dest="devices", help="device(s) to time (default: cpu, and cuda if present)")
    evaluate.add_argument("--latency-runs", type=int, default=30)
    evaluate.add_argument("--throughput-batch", type=int, default=256)
    evaluate.add_argument("--threads", type=int, help="torch threads for the timings (default: torch's own choice)")

    prepare = verbs.add_parser("prepare-data", help="download and cache the data set a config names")
    _config_args(prepare)
    prepare.add_argument("--output", type=Path, help="also write the split sizes to this JSON file")
    prepare.add_argument("--gan", action="store_true", help="the config holds GAN settings (see train-gan)")

    train_gan = verbs.add_parser("train-gan", help="train a StarGAN teacher into a run directory")
    _config_args(train_gan)
    train_gan.add_argument("--run-dir", type=Path, required=True)
    train_gan.add_argument("--resume", action="store_true")

    distill_gan = verbs.add_parser("distill-gan", help="LIT-distil a smaller StarGAN generator from a teacher run")
    _config_args(distill_gan)
    distill_gan.add_argument("--teacher", type=Path, required=True, help="the teacher's run directory")
    distill_gan.add_argument("--depth", type=int, required=True, help="residual blocks of the student generator")
    distill_gan.add_argument("--run-dir", type=Path, required=True)
    distill_gan.add_argument("--resume", action="store_true")

    evaluate_gan = verbs.add_parser("evaluate-gan", help="score a generator run (FID, cost) into its eval.json")
    evaluate_gan.add_argument("run_dir", type=Path)
    evaluate_gan.add_argument("--fid-images", type=int, help="test images translated for FID (default: the run's setting)")
    evaluate_gan.add_argument("--latency-runs", type=int, default=30)
    evaluate_gan.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")

    show = verbs.add_parser("show-config", help="print the resolved config")
    _config_args(show)

    aggregate = verbs.add_parser("aggregate", help="gather run directories into one CSV table")
    aggregate.add_argument("run_dirs", nargs="+", type=Path)
    aggregate.add_argument("--output", type=Path, required=True)
    aggregate.add_argument("--experiment", help="experiment name of every run (default: from the run directories' layout)")
    aggregate.add_argument("--metrics", type=Path, help="also write mean scores by experiment, method and depth (JSON, for DVC)")

    report = verbs.add_parser("report", help="figures and tables from an aggregated table")
    report.add_argument("table", type=Path)
    report.add_argument("--output-dir", type=Path, required=True)
    report.add_argument("--tolerance", type=float, default=0.01, help="accuracy drop (absolute) still counted as no loss")
    return parser


def load_gan_settings(path: Path, overrides: list[str]):
    """GAN settings (flat keys, see `lit.engine.gan.GANSettings`) from YAML plus overrides."""
    import yaml

    from lit.config import ConfigError, apply_override
    from lit.engine.gan import as_settings

    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    for override in overrides:
        apply_override(values, override)
    return as_settings(values)


def run_gan(args: argparse.Namespace) -> None:
    from lit.engine import gan

    if args.verb == "evaluate-gan":
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        result = gan.evaluate_generator_run(args.run_dir, fid_images=args.fid_images, latency_runs=args.latency_runs)
        print(f"FID {result['fid']:.3f} -> {args.run_dir / 'eval.json'}")
        return
    settings = load_gan_settings(args.config, args.overrides)
    if args.verb == "prepare-data":
        from lit.runtime.runlog import write_json

        settings.download = True
        Path(settings.data_root).mkdir(parents=True, exist_ok=True)
        data = gan.load_gan_data(settings)
        sizes = {"data": settings.data, "train": len(data.train), "test": len(data.test)}
        if args.output:
            write_json(args.output, sizes)
        print(f"{settings.data}: {sizes['train']} train, {sizes['test']} test")
        return
    if args.verb == "train-gan":
        summary = gan.train_gan(settings, args.run_dir, resume=args.resume)
    else:
        summary = gan.distill_generator_lit(args.teacher, args.depth, settings, args.run_dir, resume=args.resume)
    print(f"done: {summary.get('iterations', '')} iterations -> {args.run_dir}")


def run(args: argparse.Namespace) -> None:
    if args.verb in ("train-gan", "distill-gan", "evaluate-gan") or (args.verb == "prepare-data" and args.gan):
        run_gan(args)
        return
    if args.verb in ("train", "prepare-data", "show-config"):
        from lit.config import dump_config, load_config

        cfg = load_config(args.config, args.overrides)
        if args.verb == "show-config":
            print(dump_config(cfg), end="")
        elif args.verb == "prepare-data":
            from lit.data import load_data

            cfg.data.download = True
            Path(cfg.data.root).mkdir(parents=True, exist_ok=True)  # exists even for bundled data (a DVC output)
            data = load_data(cfg.data)
            sizes = {"data": cfg.data.name, "train": len(data.train), "val": len(data.val), "test": len(data.test)}
            if args.output:
                from lit.runtime.runlog import write_json

                write_json(args.output, sizes)
            print(f"{cfg.data.name}: {sizes['train']} train, {sizes['val']} validation, {sizes['test']} test")
        else:
            from lit.engine.trainer import train

            summary = train(cfg, args.run_dir, resume=args.resume)
            print(f"done: best val_acc {summary['best_val_acc']:.4f} at epoch {summary['best_epoch']} -> {args.run_dir}")
    elif args.verb == "tune":
        from lit.config import load_config
        from lit.tune import tune

        grids = {"temperature": args.temperatures, "hard_weight": args.hard_weights, "kd_weight": args.kd_weights}
        tuned = tune(load_config(args.config, args.overrides), args.teacher, grids, args.out_dir)
        print(f"tuned over {tuned['trials']} trials: temperature {tuned['temperature']:g}, hard_weight "
              f"{tuned['hard_weight']:g}, kd_weight {tuned['kd_weight']:g} -> {args.out_dir / 'tuned.json'}")
    elif args.verb == "evaluate":
        from lit.evaluate.run import evaluate_run

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        result = evaluate_run(args.run_dir, args.devices, args.latency_runs, args.throughput_batch)
        print(f"test_acc selected {result['test_acc_selected']:.4f}, last {result['test_acc_last']:.4f} -> {args.run_dir / 'eval.json'}")
    elif args.verb == "aggregate":
        from lit.report.aggregate import aggregate_runs

        table = aggregate_runs(args.run_dirs, args.output, args.experiment)
        if args.metrics:
            from lit.report.tables import write_metrics

            write_metrics(table, args.metrics)
        print(f"{len(table)} runs -> {args.output}")
    elif args.verb == "report":
        from lit.report.figures import write_report

        for path in write_report(args.table, args.output_dir, args.tolerance):
            print(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lit.config import ConfigError
    from lit.runtime.checkpoint import CheckpointError

    try:
        run(args)
    except ConfigError as err:
        print(f"lit: config error: {err}", file=sys.stderr)
        return 2
    except (CheckpointError, FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"lit: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
