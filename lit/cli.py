"""The `lit` command line: parse, call one function, exit with a clear message on error."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

VERBS_HELP = """\
verbs:
  train         train a teacher (scratch, or a StarGAN with method.name=stargan), or distil a
                student from a teacher (kd, lit, fitnets; gan_lit for generators); a
                classifier is then scored on its test set (kept for `lit evaluate`)
  tune          choose tau, then alpha (KD), then beta (LIT) on validation accuracy -> tuned.json
  evaluate      a run -> eval.json: test accuracy (classifiers) or FID, latency and sample
                grid (generators), parameters, FLOPs
  speed         time every distinct architecture of some runs once, interleaved -> JSON
  export        a run's model as ONNX (checked in ONNX Runtime; optionally int8) or TorchScript
  import-checkpoint
                another code base's checkpoint (--from lit-code: the official LIT code's CIFAR
                ResNet) -> a run directory that method.teacher accepts
  prepare-data  download and cache a config's data set (the only step that needs the network)
  show-config   print a config fully resolved, with its defaults and overrides
  plan          list every run a pipeline config (config/*.yaml) asks for, with its run id
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
    train.add_argument("--device-slots", type=int, metavar="K",
                       help="share this machine's GPUs: take one of K slots per GPU (waits while all are held) and train there "
                            "(default: $LIT_DEVICE_SLOTS, which the gpu workflow profile sets)")
    train.add_argument("--processes", type=int, metavar="N",
                       help="data-parallel over N processes, one GPU each (or N CPU processes): runs this command "
                            "under `torchrun --standalone --nproc-per-node N` (default: $LIT_TRAIN_PROCESSES, else 1)")

    tune = verbs.add_parser("tune", help="tune tau, alpha and beta on validation accuracy (never the test split)")
    _config_args(tune)
    tune.add_argument("--teacher", type=Path, required=True, help="the teacher's run directory")
    tune.add_argument("--out-dir", type=Path, required=True, help="where trials, tuning.csv, tuning.png and tuned.json go")
    tune.add_argument("--temperatures", type=float, nargs="+", default=[], help="tau grid (KD; absent: the config's value)")
    tune.add_argument("--hard-weights", type=float, nargs="+", default=[], help="alpha grid (KD; absent: the config's value)")
    tune.add_argument("--kd-weights", type=float, nargs="+", default=[], help="beta grid (LIT; absent: the config's value)")

    evaluate = verbs.add_parser("evaluate", help="evaluate a run directory into its eval.json")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--device", action="append", dest="devices", help="generators: the device of FID and latency")
    evaluate.add_argument("--latency-runs", type=int, default=30, help="generators: timed calls of the latency")
    evaluate.add_argument("--throughput-batch", type=int, default=256, help=argparse.SUPPRESS)  # kept for old scripts
    evaluate.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    evaluate.add_argument("--rescore", action="store_true",
                          help="classifiers: score the checkpoints again, not from the scores `lit train` kept")

    speed = verbs.add_parser("speed", help="time every distinct architecture of the runs once, in interleaved rounds")
    speed.add_argument("run_dirs", nargs="+", type=Path, help="evaluated run directories (one experiment's)")
    speed.add_argument("--output", type=Path, required=True, help="the JSON file to write")
    speed.add_argument("--device", action="append", dest="devices", help="device(s) to time (default: cpu, and cuda if present)")
    # defaults (None): measure_architectures' own
    speed.add_argument("--rounds", type=int, help="interleaved rounds; each figure keeps its median, fastest and slowest round (default 40)")
    speed.add_argument("--latency-runs", type=int, help="batch-1 calls per round, at the least (default 20)")
    speed.add_argument("--min-time", type=float, dest="min_time_s",
                       help="seconds each figure is timed for per round, at the least: a fast network gets more calls (default 0.02)")
    speed.add_argument("--throughput-batch", type=int, help="batch of the throughput figure (default 256)")
    speed.add_argument("--batch-runs", type=int, help="throughput calls per round, at the least (default 1)")
    speed.add_argument("--threads", type=int, default=1, help="torch threads for every timing (default 1)")
    speed.add_argument("--onnx", action="store_true",
                       help="also time each architecture exported to ONNX in ONNX Runtime (onnxruntime-cpu; -cuda where present)")
    speed.add_argument("--release-memory", action="store_true",
                       help="leave the C allocator as it is: freed memory goes back to the system and a batch call faults it in "
                            "again (by default it is kept, so that batch timings measure the network, not page faults)")
    evaluate.add_argument("--fid-images", type=int, help="generators: test images translated for FID (default: evaluate.fid_images)")

    export = verbs.add_parser("export", help="write a run's model as ONNX or TorchScript, checked against PyTorch")
    export.add_argument("run_dir", type=Path, help="an evaluated run directory (eval.json records the input shape)")
    export.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    export.add_argument("--output", type=Path, help="the file to write (default: RUN/exported/model.onnx or model.pt)")
    export.add_argument("--which", choices=("best", "last"), default="best", help="the selected (best) or the last checkpoint")
    export.add_argument("--quantize", choices=("int8",), help="onnx: static int8 quantisation, calibrated on training images")
    export.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest absolute output difference from PyTorch accepted (default 1e-4, for fp32)")
    export.add_argument("--calibration-images", type=int, default=256, help="--quantize: training images to calibrate on")

    imported = verbs.add_parser("import-checkpoint", help="convert another code base's checkpoint into a teacher run directory")
    imported.add_argument("file", type=Path, metavar="FILE", help="the checkpoint file (read with torch.load(weights_only=True))")
    imported.add_argument("--from", dest="source", required=True, metavar="FORMAT",
                          help="its code base: lit-code (the official LIT code's CIFAR ResNet: conv1, bn1, layer1..3, linear)")
    imported.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="the run directory to write (must not exist)")
    imported.add_argument("--num-classes", type=int, metavar="N", help="check that the classifier has this many classes")

    prepare = verbs.add_parser("prepare-data", help="download and cache the data set a config names")
    _config_args(prepare)
    prepare.add_argument("--output", type=Path, help="also write the split sizes to this JSON file")
    show = verbs.add_parser("show-config", help="print the resolved config")
    _config_args(show)

    plan = verbs.add_parser("plan", help="list the runs of a pipeline config: role, method, depth, seed, run id")
    plan.add_argument("config", type=Path, help="pipeline config (config/*.yaml)")
    plan.add_argument("--format", choices=("table", "json"), default="table", help="a table, or JSON with every field")
    plan.add_argument("--results", help="results folder (default: the config's `results`)")

    aggregate = verbs.add_parser("aggregate", help="gather run directories into one CSV table")
    aggregate.add_argument("run_dirs", nargs="+", type=Path)
    aggregate.add_argument("--output", type=Path, required=True)
    aggregate.add_argument("--experiment", help="experiment name of every run (default: from the run directories' layout)")
    aggregate.add_argument("--metrics", type=Path, help="also write mean scores by experiment, method and depth (JSON, for DVC)")
    aggregate.add_argument("--speed", type=Path, action="append", help="a speed-stage file (`lit speed`); may repeat")
    aggregate.add_argument("--curves", type=Path, help="also write every run's per-epoch metrics as one table (CSV, a DVC plot)")

    report = verbs.add_parser("report", help="figures and tables from an aggregated table")
    report.add_argument("table", type=Path)
    report.add_argument("--output-dir", type=Path, required=True)
    report.add_argument("--tolerance", type=float, default=0.01, help="accuracy drop (absolute) still counted as no loss")
    report.add_argument("--published", type=Path, help="published results to show beside ours (config/reference/published.yaml)")
    return parser


RETIRED_VERBS = {
    "train-gan": "lit train CONFIG (method.name: stargan)",
    "distill-gan": "lit train CONFIG method.name=gan_lit method.teacher=TEACHER_RUN model.depth=N",
    "evaluate-gan": "lit evaluate RUN_DIR",
}


def run(args: argparse.Namespace) -> int | None:
    if args.verb in ("train", "prepare-data", "show-config"):
        from lit.config import dump_config
        from lit.engine.runconfig import load_run_config

        cfg = load_run_config(args.config, args.overrides)
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
        elif (processes := data_parallel_processes(args)) > 1:
            return launch_data_parallel(processes, args.argv)
        else:
            from lit.engine.trainer import train
            from lit.runtime.slots import slots_from_environment, take_training_slot

            slots = args.device_slots if args.device_slots is not None else slots_from_environment()
            slot = None if slots is None else take_training_slot(slots, cfg.train.device, args.run_dir)
            summary = train(cfg, args.run_dir, resume=args.resume, device_slot=slot)
            if summary.get("rank"):  # a data-parallel run's other ranks: rank 0 reports
                return
            from lit.evaluate.run import score_finished_run

            # a classifier is scored here, where torch, data and model are loaded: `lit evaluate`
            # then writes eval.json from these scores (lit.evaluate.scores). The run is trained
            # whatever happens here: a failure to score it must not fail the training (a
            # workflow would delete the checkpoints of a failed job), `lit evaluate` reports it
            try:
                scored = score_finished_run(args.run_dir)
            except Exception as err:
                print(f"lit: warning: the run is trained but was not scored ({type(err).__name__}: {err}); "
                      f"`lit evaluate {args.run_dir}` scores it", file=sys.stderr)
                scored = None
            if scored is not None:
                print(f"scored: test_acc selected {scored['test_acc_selected']:.4f}, last {scored['test_acc_last']:.4f} "
                      f"(kept in summary.json for `lit evaluate`)")
            if summary["best_val_acc"] is None:
                print(f"done: {summary['iterations'] or summary['epochs']} {'iterations' if summary['iterations'] else 'epochs'} -> {args.run_dir}")
            else:
                print(f"done: best val_acc {summary['best_val_acc']:.4f} at epoch {summary['best_epoch']} -> {args.run_dir}")
    elif args.verb == "tune":
        from lit.engine.runconfig import load_run_config
        from lit.tune import tune

        grids = {"temperature": args.temperatures, "hard_weight": args.hard_weights, "kd_weight": args.kd_weights}
        tuned = tune(load_run_config(args.config, args.overrides), args.teacher, grids, args.out_dir)
        print(f"tuned over {tuned['trials']} trials: temperature {tuned['temperature']:g}, hard_weight "
              f"{tuned['hard_weight']:g}, kd_weight {tuned['kd_weight']:g} -> {args.out_dir / 'tuned.json'}")
    elif args.verb == "evaluate":
        from lit.evaluate.scores import reuse_training_scores

        result = None if args.rescore else reuse_training_scores(args.run_dir)  # no torch on this path
        if result is None:
            from lit.evaluate.run import evaluate_run

            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            result = evaluate_run(args.run_dir, args.devices, args.latency_runs, args.throughput_batch, args.fid_images)
        if "fid" in result:
            print(f"FID {result['fid']:.3f} -> {args.run_dir / 'eval.json'}, {args.run_dir / 'samples.png'}")
        else:
            print(f"test_acc selected {result['test_acc_selected']:.4f}, last {result['test_acc_last']:.4f} -> {args.run_dir / 'eval.json'}")
    elif args.verb == "speed":
        from lit.evaluate.speed import busy_figures, write_speed

        given = {name: getattr(args, name) for name in ("rounds", "latency_runs", "batch_runs", "min_time_s", "throughput_batch")}
        if args.release_memory:
            given["keep_memory"] = False
        result = write_speed(args.run_dirs, args.output, devices=args.devices, threads=args.threads, onnx=args.onnx,
                             **{name: value for name, value in given.items() if value is not None})
        for architecture in result["architectures"]:
            cpu = architecture.get("cpu", {}).get("latency_ms_batch1", {})
            onnx = architecture.get("onnxruntime-cpu", {}).get("latency_ms_batch1")
            print(f"{architecture['label']}: {len(architecture['runs'])} runs, CPU latency {cpu.get('min', float('nan')):.3f} ms "
                  f"in the fastest round (median {cpu.get('median', float('nan')):.3f}, slowest {cpu.get('max', float('nan')):.3f})"
                  + (f", ONNX Runtime {onnx['min']:.3f} ms" if onnx else ""))
        busy = busy_figures(result)
        if busy:
            print("lit: warning: the machine was busy or changed speed during the stage; these medians will not "
                  "repeat (the tables take the fastest round): " + "; ".join(busy), file=sys.stderr)
        print(f"-> {args.output}")
    elif args.verb == "export":
        from lit.evaluate.export import default_output, export_run

        output = args.output or default_output(args.run_dir, args.format, args.which, args.quantize)
        record = export_run(args.run_dir, args.format, output, args.which, args.quantize, args.tolerance,
                            args.calibration_images)
        line = f"{args.format}: max abs difference from PyTorch {record['max_abs_diff']:.2g}"
        if "quantization" in record:
            scores = record["quantization"]
            line += (f"; test accuracy PyTorch {scores['test_acc_torch']:.4f}, ONNX fp32 {scores['test_acc_onnx_fp32']:.4f}, "
                     f"int8 {scores['test_acc_onnx_int8']:.4f}")
        print(f"{line} -> {output}, {output}.json")
    elif args.verb == "import-checkpoint":
        from lit.models.convert import import_checkpoint

        record = import_checkpoint(args.file, args.out, args.source, args.num_classes)
        layout = record["layout"]
        print(f"{args.source}: {record['spec']['family']}-{layout['depth']}, {layout['num_classes']} classes, "
              f"sha256 {record['imported_from']['sha256'][:12]} -> {args.out}")
    elif args.verb == "plan":
        from lit.plan import print_plan

        print_plan(args.config, args.format, args.results)
    elif args.verb == "aggregate":
        from lit.report.aggregate import aggregate_runs

        table = aggregate_runs(args.run_dirs, args.output, args.experiment, args.speed or ())
        if args.curves:
            from lit.report.curves import write_curves

            write_curves(table, args.curves)
        if args.metrics:
            from lit.report.tables import write_metrics

            write_metrics(table, args.metrics)
        print(f"{len(table)} runs -> {args.output}")
    elif args.verb == "report":
        from lit.report.figures import write_report

        for path in write_report(args.table, args.output_dir, args.tolerance, args.published):
            print(path)


def data_parallel_processes(args: argparse.Namespace) -> int:
    """How many processes `lit train` should run over: 1 inside torchrun (it started them)."""
    from lit.runtime.distributed import launched_processes

    if launched_processes() > 1:
        return 1
    value = args.processes if args.processes is not None else os.environ.get("LIT_TRAIN_PROCESSES", "1")
    try:
        processes = int(value)
    except ValueError:
        processes = 0
    if processes < 1:
        source = "--processes" if args.processes is not None else "LIT_TRAIN_PROCESSES"
        raise ValueError(f"{source} must be a whole number >= 1, got {value!r}")
    return processes


def launch_data_parallel(processes: int, argv: list[str]) -> int:
    """This same `lit train` command under torchrun, one process per rank (on one machine)."""
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               "-m", "lit", *argv]
    print(f"lit: data-parallel over {processes} processes: torchrun --standalone --nproc-per-node {processes} "
          f"-m lit {' '.join(argv)}", file=sys.stderr, flush=True)
    return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in RETIRED_VERBS:
        print(f"lit: '{argv[0]}' is retired: GAN runs use the common verbs; use `{RETIRED_VERBS[argv[0]]}`", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    from lit.config import ConfigError
    from lit.runtime.errors import CheckpointError  # not lit.runtime.checkpoint: that imports torch

    try:
        code = run(args)  # the exit status of a command run in other processes (torchrun)
    except BrokenPipeError:  # the reader left (`lit plan ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ConfigError as err:
        print(f"lit: config error: {err}", file=sys.stderr)
        return 2
    except (CheckpointError, FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"lit: error: {message}", file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
