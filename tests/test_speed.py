"""The speed stage: every distinct architecture timed once, interleaved, median and range over
rounds; runs of one architecture share one figure in the tables (the fastest round)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lit.evaluate.speed as speed_module
from conftest import digits_config
from lit.cli import main
from lit.engine.trainer import train
from lit.evaluate.run import evaluate_run
from lit.evaluate.speed import measure_architectures
from lit.report.aggregate import aggregate_runs
from lit.report.experiment_tables import summary_table, tabulate_experiment

QUICK = ("method.name=scratch", "train.precision=fp32", "train.phases.train={epochs: 1, lr: 0.05}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two seeds of a ResNet-8 and one ResNet-14, trained and evaluated, in the pipeline's layout."""
    root = tmp_path_factory.mktemp("speed") / "results" / "runs" / "toy"
    made = {}
    for name, depth, seed in (("teacher-resnet14-s0", 14, 0), ("scratch-resnet8-s0", 8, 0), ("scratch-resnet8-s1", 8, 1)):
        made[name] = root / name
        train(digits_config(*QUICK, f"model.depth={depth}", f"seed={seed}"), made[name])
        evaluate_run(made[name])
    return made


def test_each_architecture_is_timed_once_in_interleaved_rounds(runs, monkeypatch):
    order = []
    real = speed_module.time_round

    def recording(model, single, batch, device, latency_runs, batch_runs):
        order.append((sum(p.numel() for p in model.parameters()), latency_runs))
        return real(model, single, batch, device, latency_runs, batch_runs)

    monkeypatch.setattr(speed_module, "time_round", recording)
    result = measure_architectures(list(runs.values()), devices=["cpu"], rounds=3, latency_runs=2, throughput_batch=8,
                                   min_time_s=0)  # no minimum time: every round makes exactly 2 calls
    labels = sorted(a["label"] for a in result["architectures"])
    assert labels == ["resnet14", "resnet8"]
    resnet8 = next(a for a in result["architectures"] if a["label"] == "resnet8")
    assert sorted(Path(r).name for r in resnet8["runs"]) == ["scratch-resnet8-s0", "scratch-resnet8-s1"]
    timed = [size for size, runs_per_round in order if runs_per_round == 2]  # the rounds, after the warm-ups
    assert len(timed) == 6 and timed[0::2] == [timed[0]] * 3 and timed[1::2] == [timed[1]] * 3 and timed[0] != timed[1]
    latency = resnet8["cpu"]["latency_ms_batch1"]
    assert 0 < latency["min"] <= latency["median"] <= latency["max"]
    assert len(latency["per_round"]) == 3 and latency["median"] == sorted(latency["per_round"])[1]
    assert resnet8["cpu"]["throughput_per_s_batch8"]["median"] > 0
    assert result["threads"] == 1 and result["provenance"]["device_name"]


def test_a_round_times_each_figure_for_at_least_min_time(runs, monkeypatch):
    """The warm-up sets each architecture's calls per round: enough to fill `min_time_s`,
    `latency_runs` at the least, the same in every round; a faster network gets more."""
    order = []
    real = speed_module.time_round

    def recording(model, single, batch, device, latency_runs, batch_runs):
        order.append((sum(p.numel() for p in model.parameters()), latency_runs, batch_runs))
        return real(model, single, batch, device, latency_runs, batch_runs)

    monkeypatch.setattr(speed_module, "time_round", recording)
    result = measure_architectures(list(runs.values()), devices=["cpu"], rounds=2, latency_runs=3, batch_runs=2,
                                   throughput_batch=8, min_time_s=0.05)
    assert result["min_time_s"] == 0.05
    by_label = {a["label"]: a for a in result["architectures"]}
    sizes = sorted({size for size, _, _ in order})  # resnet8, resnet14
    assert [(l, b) for _, l, b in order[:4]] == [(1, 1), (5, 1)] * 2  # each: a first call, then its pace
    timed = order[4:]  # after each architecture's warm-up
    for size, label in zip(sizes, ("resnet8", "resnet14")):
        counts = by_label[label]["calls_per_round"]["cpu"]
        assert counts["latency_runs"] >= 3 and counts["batch_runs"] >= 2
        assert [(l, b) for s, l, b in timed if s == size] == [(counts["latency_runs"], counts["batch_runs"])] * 2
        # the calls fill the minimum time at the pace of the rounds (within the warm-up's error, which
        # a busy machine can make large)
        latency_s = by_label[label]["cpu"]["latency_ms_batch1"]["max"] / 1e3
        assert counts["latency_runs"] == 3 or counts["latency_runs"] * latency_s > 0.05 / 10
    assert by_label["resnet8"]["calls_per_round"]["cpu"]["latency_runs"] > by_label["resnet14"]["calls_per_round"]["cpu"]["latency_runs"]


def test_the_first_call_of_a_network_does_not_set_its_pace(runs, monkeypatch):
    """A network's first call sets up its kernels and memory and takes far longer than the
    next: the warm-up makes it untimed, so the calls per round follow the later pace."""
    calls: dict[int, int] = {}

    def first_slow(model, single, batch, device, latency_runs, batch_runs):
        calls[id(model)] = calls.get(id(model), 0) + 1
        return (1.0, 1.0) if calls[id(model)] == 1 else (0.001, 0.004)  # seconds: batch 1, batch

    monkeypatch.setattr(speed_module, "time_round", first_slow)
    result = measure_architectures(list(runs.values()), devices=["cpu"], rounds=2, latency_runs=3, batch_runs=1,
                                   throughput_batch=8, min_time_s=0.02)
    for architecture in result["architectures"]:
        assert architecture["calls_per_round"]["cpu"] == {"latency_runs": 20, "batch_runs": 5}
        assert architecture["cpu"]["latency_ms_batch1"]["max"] == pytest.approx(1.0)  # no round took the first call's time


def test_each_pruned_architecture_has_a_label_of_its_own():
    """Seeds of a pruning method keep different channels: one depth, as many architectures,
    each named apart (a count of pruned layers named them alike, and the stability
    benchmark, keyed by label, merged them)."""
    base = {"family": "resnet", "depth": 20, "options": {}}
    def pruned(width: int) -> dict:
        return {"sections.0.0.bn1": {"num_features": width},
                "sections.0.0.conv1": {"in_channels": 16, "out_channels": width}}

    seed0 = {**base, "options": {"pruned": pruned(7)}}
    seed1 = {**base, "options": {"pruned": pruned(9)}}  # as many pruned layers, other widths
    labels = [speed_module.architecture_label(spec) for spec in (base, seed0, seed1)]
    assert labels[0] == "resnet20"
    assert labels[1].startswith("resnet20-pruned-") and labels[2].startswith("resnet20-pruned-")
    assert labels[1] != labels[2]
    same = {**base, "options": {"pruned": dict(reversed(list(pruned(7).items())))}}  # other order, same net
    assert speed_module.architecture_label(same) == labels[1]


FAULTS_PER_ALLOCATION = """
import resource, statistics, sys
import torch
from lit.evaluate.speed import keep_freed_memory
record = keep_freed_memory() if sys.argv[1] == "keep" else "default"
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(8 << 20).fill_(1)  # 32 MiB allocated, written, freed: a batch call's activation
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(record, "|", statistics.median(faults))
"""


def faults_per_allocation(mode: str) -> tuple[str, float]:
    """The allocator's record and the median page faults of one allocation, in a new process."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FAULTS_PER_ALLOCATION, mode], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    record, faults = out.split(" | ")
    return record, float(faults)


def test_the_allocator_keeps_freed_memory_so_a_batch_call_does_not_fault_it_in_again():
    """By default glibc returns a large freed block to the system and the next call faults
    every page of it in again (8,192 pages of 4 KiB for 32 MiB); kept, the calls reuse it
    (the first one or two, and now and then one more as the heap settles, still fault:
    the median counts). Each in its own process: the setting lasts for the process."""
    default_record, default_faults = faults_per_allocation("default")
    kept_record, kept_faults = faults_per_allocation("keep")
    assert default_faults > 4000, default_faults
    assert kept_record.startswith("kept: ") and kept_faults < 100, (kept_record, kept_faults)


def test_calls_for_a_minimum_time():
    assert speed_module.calls_for(0.001, 20, 0.2) == 200
    assert speed_module.calls_for(0.1, 20, 0.2) == 20
    assert speed_module.calls_for(0.001, 20, 0.0) == 20
    assert speed_module.calls_for(0.0, 20, 0.2) == speed_module.MAX_CALLS
    with pytest.raises(ValueError, match="min_time_s must be a number of seconds >= 0"):
        measure_architectures([], min_time_s=-1)


def test_runs_of_one_architecture_share_one_speed_in_the_tables(runs, tmp_path):
    assert main(["speed", *map(str, runs.values()), "--output", str(tmp_path / "speed.json"), "--rounds", "2",
                 "--latency-runs", "2", "--throughput-batch", "8"]) == 0
    table = aggregate_runs(runs.values(), speed=[tmp_path / "speed.json"])
    students = table[table["depth"] == 8]
    assert students["latency_ms_cpu"].nunique() == 1 and students["latency_ms_cpu"].iloc[0] > 0
    saved = json.loads((tmp_path / "speed.json").read_text())
    resnet8 = next(a for a in saved["architectures"] if a["label"] == "resnet8")
    # the tables take each figure's fastest round: the lowest latency, the highest throughput
    assert students["latency_ms_cpu"].iloc[0] == resnet8["cpu"]["latency_ms_batch1"]["min"]
    assert students["throughput_cpu"].nunique() == 1
    assert students["throughput_cpu"].iloc[0] == resnet8["cpu"]["throughput_per_s_batch8"]["max"]
    summary = summary_table(tabulate_experiment(table))
    teacher = summary[summary["role"] == "teacher"].iloc[0]
    student = summary[summary["role"] == "student"].iloc[0]
    assert student["speedup_vs_teacher"] == pytest.approx(teacher["latency_ms_cpu"] / student["latency_ms_cpu"])


def test_lit_speed_passes_only_the_options_given(runs, tmp_path, monkeypatch):
    """Options left out take `measure_architectures`' defaults (one source for them); those
    given reach it as given."""
    calls = []

    def recording(run_dirs, **options):
        calls.append(options)
        return {"architectures": []}

    monkeypatch.setattr(speed_module, "measure_architectures", recording)
    assert main(["speed", str(runs["scratch-resnet8-s0"]), "--output", str(tmp_path / "a.json")]) == 0
    assert main(["speed", str(runs["scratch-resnet8-s0"]), "--output", str(tmp_path / "b.json"), "--rounds", "3",
                 "--min-time", "0.5", "--batch-runs", "2", "--latency-runs", "4", "--throughput-batch", "16"]) == 0
    assert set(calls[0]) == {"devices", "threads", "onnx"}
    assert {k: calls[1][k] for k in ("rounds", "min_time_s", "batch_runs", "latency_runs", "throughput_batch")} == {
        "rounds": 3, "min_time_s": 0.5, "batch_runs": 2, "latency_runs": 4, "throughput_batch": 16}
    assert "keep_memory" not in calls[1]  # kept by default
    assert main(["speed", str(runs["scratch-resnet8-s0"]), "--output", str(tmp_path / "c.json"), "--release-memory"]) == 0
    assert calls[2]["keep_memory"] is False


def test_an_evaluation_without_an_input_shape_is_named(runs, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs["scratch-resnet8-s0"], old)
    evaluation = json.loads((old / "eval.json").read_text())
    del evaluation["input_shape"]
    (old / "eval.json").write_text(json.dumps(evaluation))
    with pytest.raises(ValueError, match="records no input shape"):
        measure_architectures([old], devices=["cpu"], rounds=1, latency_runs=1, throughput_batch=2)


def load_benchmark(name: str):
    """The module of `benchmarks/<name>.py` (the benchmarks are scripts, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stage(rounds: dict[int, tuple[list[float], list[float]]]) -> dict:
    """A `lit speed` result with these per-round (latencies, throughputs) per ResNet depth."""
    import statistics

    return {"architectures": [
        {"label": f"resnet{depth}", "spec": {"family": "resnet", "depth": depth},
         "cpu": {"latency_ms_batch1": {"median": statistics.median(lat), "min": min(lat), "max": max(lat), "per_round": lat},
                 "throughput_per_s_batch8": {"median": statistics.median(thr), "min": min(thr), "max": max(thr),
                                             "per_round": thr}}}
        for depth, (lat, thr) in rounds.items()]}


def test_stability_benchmark_compares_fastest_rounds_and_medians_across_stages():
    bench = load_benchmark("speed_stability")
    stages = [stage({32: ([2.0, 3.0, 4.0], [100, 90, 80]), 8: ([0.5, 0.9, 0.6], [400, 300, 350])}),
              stage({32: ([2.2, 6.0, 6.0], [110, 50, 60]), 8: ([0.55, 1.5, 1.4], [440, 200, 210])})]
    summary = bench.compare_stages(stages)
    assert summary["teacher"] == "resnet32"  # the deepest
    student = summary["architectures"]["resnet8"]
    assert student["latency_fastest"]["per_stage"] == [0.5, 0.55]
    assert student["latency_median"]["per_stage"] == [0.6, 1.4]
    assert student["latency_fastest"]["largest_consecutive_change"] == pytest.approx(0.1)
    assert student["latency_median"]["largest_consecutive_change"] == pytest.approx(1.4 / 0.6 - 1)
    assert student["latency_fastest"]["speedup_per_stage"] == pytest.approx([4.0, 4.0])
    assert student["latency_fastest"]["speedup_spread"] == pytest.approx(0.0)
    assert student["throughput_fastest"]["per_stage"] == [400, 440]  # the highest throughput
    assert student["throughput_median"]["speedup_per_stage"] == pytest.approx([350 / 90, 210 / 60])
    with pytest.raises(ValueError, match="two of them"):
        bench.compare_stages(stages[:1])


def test_stability_benchmark_takes_the_teachers_architecture_not_a_pruned_one_of_its_depth():
    """Network slimming prunes a network as deep as the teacher: the reference is the
    architecture of the run named `teacher-...`, else the deepest unpruned one."""
    bench = load_benchmark("speed_stability")

    def architecture(label, depth, runs, pruned=None):
        return {"label": label, "spec": {"family": "resnet", "depth": depth, "options": {"pruned": pruned} if pruned else {}},
                "runs": runs}

    slimmed = architecture("resnet20-pruned-zzzzzz", 20, ["runs/x/slimming-resnet20-s0-1"], {"sections.0.0.bn1": {}})
    teacher = architecture("resnet20", 20, ["runs/x/teacher-resnet20-s0-2"])
    student = architecture("resnet8", 8, ["runs/x/kd-resnet8-s0-3"])
    assert bench.teacher_label({"architectures": [student, slimmed, teacher]}) == "resnet20"
    unnamed = {**teacher, "runs": ["elsewhere/run"]}  # no run named as a teacher: the deepest unpruned
    assert bench.teacher_label({"architectures": [student, slimmed, unnamed]}) == "resnet20"
    shallow_teacher = architecture("resnet14", 14, ["runs/x/teacher-resnet14-s0-4"])
    assert bench.teacher_label({"architectures": [student, unnamed, shallow_teacher]}) == "resnet14"


def test_stability_benchmark_runs_lit_speed_per_stage_on_a_folder_of_runs(runs, tmp_path, monkeypatch, capsys):
    """Each stage is a `lit speed` command (here run in-process); a folder of runs stands for
    the evaluated run directories in it, a folder of none is refused by name."""
    bench = load_benchmark("speed_stability")
    commands = []

    def in_process(command, check, stdout):
        commands.append(command)
        assert command[1:4] == ["-m", "lit", "speed"] and check
        assert main(command[3:]) == 0

    monkeypatch.setattr(bench.subprocess, "run", in_process)
    folder = next(iter(runs.values())).parent
    (folder / "tuning-x").mkdir(exist_ok=True)  # no eval.json: not a run
    output = tmp_path / "stability.json"
    bench.main([str(folder), "--stages", "2", "--output", str(output), "--",
                "--rounds", "2", "--latency-runs", "1", "--min-time", "0", "--throughput-batch", "4"])
    result = json.loads(output.read_text())
    assert len(commands) == 2 and result["lit_speed_options"][:2] == ["--rounds", "2"]
    assert sorted(Path(run).name for run in result["runs"]) == sorted(runs)
    assert [len(s["architectures"]) for s in result["stage_results"]] == [2, 2]
    assert set(result["summary"]["architectures"]) == {"resnet8", "resnet14"}
    assert result["summary"] == bench.compare_stages(result["stage_results"])
    assert "resnet8" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="neither an evaluated run directory"):
        bench.run_directories([tmp_path / "empty"])


def test_a_stage_on_a_busy_machine_is_named(runs, tmp_path, monkeypatch, capsys):
    """A batch-1 median more than 10% above its fastest round means the machine was busy:
    `lit speed` names each such figure on stderr, and stays quiet on a steady stage."""
    def latency(median, fastest):
        return {"latency_ms_batch1": {"median": median, "min": fastest, "max": median * 2, "per_round": [fastest, median]}}

    busy = {"architectures": [
        {"label": "resnet32", "spec": {"depth": 32}, "runs": ["a"], "cpu": latency(1.2, 1.0),
         "onnxruntime-cpu": latency(0.5, 0.49), "calls_per_round": {"cpu": {"latency_runs": 20}}, "onnx_max_abs_diff": 0.0},
        {"label": "resnet8", "spec": {"depth": 8}, "runs": ["b"], "cpu": latency(0.44, 0.4)}]}
    assert speed_module.busy_figures(busy) == ["resnet32 (cpu): median 1.200 ms, 20% above the fastest round's 1.000"]
    assert speed_module.busy_figures(busy, tolerance=0.05) == [
        "resnet32 (cpu): median 1.200 ms, 20% above the fastest round's 1.000",
        "resnet8 (cpu): median 0.440 ms, 10% above the fastest round's 0.400"]

    for result, warned in ((busy, True), ({"architectures": [busy["architectures"][1]]}, False)):
        monkeypatch.setattr(speed_module, "measure_architectures", lambda run_dirs, result=result, **options: result)
        assert main(["speed", str(runs["scratch-resnet8-s0"]), "--output", str(tmp_path / "speed.json")]) == 0
        err = capsys.readouterr().err
        assert ("machine was busy" in err and "resnet32 (cpu): median 1.200 ms" in err) is warned, err


def test_host_noise_summary_counts_slow_windows_and_spells():
    bench = load_benchmark("host_noise")
    times = [1.0, 1.05, 2.1, 2.0, 1.0, 1.1, 2.2, 1.02, 1.01, 1.0]  # two slow spells: 2 windows, then 1
    windows = [{"median_ms": t, "calls": 90, "steal_ticks": 1 if t > 2 else 0} for t in times]
    summary = bench.summarise(windows, window=0.1, slow_above=0.15, ticks_per_s=100.0)
    assert summary["fastest_ms"] == 1.0
    assert summary["median_ms"] == pytest.approx(1.035)
    assert summary["median_above_fastest"] == pytest.approx(0.035)
    assert summary["slow_share"] == pytest.approx(0.3)
    assert summary["slow_spells"] == 2
    assert summary["longest_slow_spell_s"] == pytest.approx(0.2)
    assert summary["steal_s"] == pytest.approx(0.02)
    windows[0]["steal_ticks"] = None  # a kernel without steal accounting
    assert bench.summarise(windows, window=0.1)["steal_s"] is None
    with pytest.raises(ValueError, match="no windows"):
        bench.summarise([], window=0.1)


def test_host_noise_benchmark_writes_every_window(tmp_path):
    bench = load_benchmark("host_noise")
    output = tmp_path / "noise.json"
    bench.main(["--seconds", "0.3", "--window", "0.05", "--output", str(output)])
    result = json.loads(output.read_text())
    times = [w["median_ms"] for w in result["windows"]]
    assert result["summary"]["windows"] == len(times) >= 3
    assert result["summary"]["fastest_ms"] == min(times) > 0
    assert all(w["calls"] >= 1 for w in result["windows"])
    with pytest.raises(SystemExit):
        bench.main(["--seconds", "0"])
