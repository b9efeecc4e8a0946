"""Which int8 quantisation `lit export --quantize int8` uses: static or dynamic, measured.

Trains digits ResNets from scratch (fp32; or takes evaluated run directories), exports each
with `lit export` (float ONNX and static int8), quantises the float model dynamically as
well (ONNX Runtime's `quantize_dynamic`, its default operator set, int8 weights), and
measures batch-1 latency of PyTorch, ONNX Runtime float, static int8 and dynamic int8 at
one thread, in interleaved rounds (the median over rounds of the median of `--calls` calls
each), and the test accuracy of each. Writes JSON.

    python benchmarks/onnx_quantisation.py --output benchmarks/results/onnx-quantisation-digits.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="evaluated run directories (default: train digits ResNets)")
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from lit.data import Batches
    from lit.engine.runconfig import load_run_config
    from lit.engine.trainer import train
    from lit.evaluate.export import export_run, onnx_session, run_data
    from lit.evaluate.run import evaluate_run
    from lit.models.io import load_model
    from lit.runtime.provenance import provenance

    torch.set_num_threads(1)
    scratch = Path(tempfile.mkdtemp(prefix="onnx-quantisation-"))
    runs = list(args.runs)
    for depth in [] if runs else args.depths:
        run_dir = scratch / f"resnet{depth}"
        cfg = load_run_config(None, ["data.name=digits", "method.name=scratch", f"model.depth={depth}", "train.precision=fp32",
                                     "train.progress=off", "train.threads=1", "train.batch_size=64",
                                     f"train.phases.train={{epochs: {args.epochs}, lr: 0.05, milestones: [{args.epochs * 2 // 3}]}}"])
        train(cfg, run_dir)
        evaluate_run(run_dir)
        runs.append(run_dir)

    results = []
    for run_dir in runs:
        out = scratch / run_dir.name
        export_run(run_dir, "onnx", out / "float.onnx")
        record = export_run(run_dir, "onnx", out / "static.onnx", quantize="int8")
        quantize_dynamic(str(out / "float.onnx"), str(out / "dynamic.onnx"), weight_type=QuantType.QInt8)
        cfg, data = run_data(run_dir)
        test = list(Batches(data.test, data, 256))
        single = test[0][0][:1]
        model, _ = load_model(run_dir)
        model.eval()
        sessions = {name: onnx_session(out / f"{name}.onnx", threads=1) for name in ("float", "static", "dynamic")}
        calls = {"torch": lambda: model(single)}
        calls.update({f"onnxruntime-{name}": (lambda s=s: s.run(None, {"input": single.numpy()})) for name, s in sessions.items()})
        latencies: dict[str, list[float]] = {name: [] for name in calls}
        with torch.no_grad():
            for repeat in range(args.rounds + 1):
                for name, call in calls.items():  # interleaved
                    times = []
                    for _ in range(args.calls if repeat else 10):
                        start = time.perf_counter()
                        call()
                        times.append(time.perf_counter() - start)
                    if repeat:
                        latencies[name].append(statistics.median(times) * 1e3)
        accuracy = {"torch": record["quantization"]["test_acc_torch"]}
        for name, session in sessions.items():
            predictions = np.concatenate([session.run(None, {"input": x.numpy()})[0].argmax(1) for x, _ in test])
            accuracy[f"onnxruntime-{name}"] = float((predictions == data.test.labels.numpy()).mean())
        results.append({
            "run": run_dir.name, "spec": record["spec"], "test_images": len(data.test),
            "latency_ms_batch1": {name: {"median": statistics.median(v), "min": min(v), "max": max(v)} for name, v in latencies.items()},
            "test_acc": accuracy,
        })
        print(run_dir.name, {name: round(statistics.median(v), 4) for name, v in latencies.items()}, accuracy)
    payload = {"rounds": args.rounds, "calls": args.calls, "threads": 1, "onnxruntime": ort.__version__,
               "results": results, "provenance": provenance("cpu")}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
