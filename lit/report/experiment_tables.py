"""Per-experiment tables computed from the tidy run table (`lit.report.aggregate`).

A configuration is one (role, method, family, depth, KD/LIT weights): its seeds are
averaged. Means are over seeds; standard deviations are the sample standard deviation
(ddof=1), empty for a single seed. Latency and throughput are the median over seeds: the
seeds of a configuration are the same network, so their timings differ only by noise
(a timing taken while the machine was busy must not drag the figure). The reference teacher is the teacher configuration the
students name most often (the deepest on a tie); speed-up and compression ratios are
against it: speed-up = teacher latency / student latency (CPU, batch 1), compression by
depth = teacher depth / student depth, by parameters = teacher parameters / student
parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lit.report.aggregate import WEIGHT_NAMES
from lit.report.published import Published, matching

CONFIG_KEYS = ["role", "method", "family", "depth", *WEIGHT_NAMES]
KNOWN_METHOD_ORDER = ["stargan", "scratch", "kd", "fitnets", "at", "crd", "reviewkd", "dkd", "slimming", "lit", "gan_lit"]
TOLERANCE_SLACK = 1e-9  # accuracies are fractions of a test set: float noise must not exclude a tie

SUMMARY_COLUMNS = [
    "role", "method", "family", "depth", "n_seeds", "test_acc_mean", "test_acc_std", "test_acc_last_mean", "test_acc_last_std",
    "test_acc_oracle_mean", "test_acc_oracle_std", "published", "val_acc_mean", "val_acc_std",
    "params", "flops_m", "latency_ms_cpu", "throughput_cpu", "latency_ms_cuda", "throughput_cuda",
    "latency_ms_onnx_cpu", "speedup_vs_teacher", "compression_by_depth", "compression_by_params", "compression_by_flops",
    "train_minutes", "train_cpu_minutes", "train_cost_vs_kd", "train_peak_rss_mb", *WEIGHT_NAMES, "protocol",
]
FID_COLUMNS = [
    "role", "method", "family", "depth", "n_seeds", "fid_mean", "fid_std", "published", "params", "flops_m",
    "latency_ms_cpu", "speedup_vs_teacher", "compression_by_depth", "compression_by_params",
]
COMPRESSION_COLUMNS = [
    "method", "student_depth", "n_seeds", "test_acc_mean", "test_acc_std", "teacher_depth", "teacher_test_acc",
    "accuracy_drop", "tolerance", "params", "flops_m", "compression_by_depth", "compression_by_params",
    "compression_by_flops", "speedup_vs_teacher", *WEIGHT_NAMES, "protocol",
]


@dataclass
class ExperimentTables:
    configs: pd.DataFrame  # every configuration: means over seeds and ratios against the teacher
    teacher: pd.Series | None  # the reference teacher's configuration, None without a teacher run

    @property
    def students(self) -> pd.DataFrame:
        return self.configs[self.configs["role"] == "student"]

    @property
    def is_gan(self) -> bool:
        return bool(self.configs["fid_mean"].notna().any())


def method_order(methods) -> list[str]:
    """Methods as the paper lists them (baselines first, LIT last), any others alphabetically before LIT."""
    present = set(pd.Series(methods).dropna())
    known = [m for m in KNOWN_METHOD_ORDER if m in present and m != "lit"]
    return known + sorted(present - set(KNOWN_METHOD_ORDER)) + (["lit"] if "lit" in present else [])


def tabulate_experiment(runs: pd.DataFrame, published: list[Published] | None = None) -> ExperimentTables:
    """The configurations of one experiment's runs, teacher first, then methods by depth;
    `published` values that match a configuration (`lit.report.published`) in its own column."""
    configs = configurations(runs)
    teacher = reference_teacher(configs, runs)
    configs = add_ratios(configs, teacher)
    data, options = runs["data"].dropna(), runs["data_options"].dropna() if "data_options" in runs else pd.Series(dtype=str)
    found = [matching(published or [], row, data.iloc[0] if len(data) else None, options.iloc[0] if len(options) else None,
                      teacher) for _, row in configs.iterrows()]
    configs["published"] = ["; ".join(entry.text for entry in entries) or None for entries in found]
    configs["published_values"] = [[(entry.value, entry.source_key) for entry in entries] for entries in found]
    rank = {method: index for index, method in enumerate(method_order(configs["method"]))}
    configs = configs.assign(teacher_last=configs["role"] != "teacher", method_rank=configs["method"].map(rank))
    configs = configs.sort_values(["teacher_last", "method_rank", "depth", *WEIGHT_NAMES], kind="stable")
    return ExperimentTables(configs.drop(columns=["teacher_last", "method_rank"]).reset_index(drop=True), teacher)


def configurations(runs: pd.DataFrame) -> pd.DataFrame:
    grouped = runs.groupby(CONFIG_KEYS, dropna=False, sort=False)
    configs = grouped.agg(
        n_seeds=("run_id", "count"),
        test_acc_mean=("test_acc_selected", "mean"), test_acc_std=("test_acc_selected", "std"),
        test_acc_last_mean=("test_acc_last", "mean"), test_acc_last_std=("test_acc_last", "std"),
        test_acc_oracle_mean=("test_acc_oracle", "mean"), test_acc_oracle_std=("test_acc_oracle", "std"),
        val_acc_mean=("val_acc_selected", "mean"), val_acc_std=("val_acc_selected", "std"),
        fid_mean=("fid", "mean"), fid_std=("fid", "std"),
        params=("params", "mean"), flops=("flops", "mean"),
        latency_ms_cpu=("latency_ms_cpu", "median"), throughput_cpu=("throughput_cpu", "median"),
        latency_ms_cuda=("latency_ms_cuda", "median"), throughput_cuda=("throughput_cuda", "median"),
        latency_ms_onnx_cpu=("latency_ms_onnx_cpu", "median"),
        train_seconds=("train_seconds", "mean"), train_cpu_seconds=("train_cpu_seconds", "mean"),
        train_peak_rss_mb=("train_peak_rss_mb", "max"),
        run_ids=("run_id", lambda ids: " ".join(sorted(ids))),
    ).reset_index()
    configs["train_minutes"] = configs.pop("train_seconds") / 60
    configs["train_cpu_minutes"] = configs.pop("train_cpu_seconds") / 60
    configs["train_cost_vs_kd"] = cost_against_kd(configs)
    configs["protocol"] = [protocol_text(group) for _, group in grouped]
    configs["flops_m"] = configs.pop("flops") / 1e6
    return configs


def cost_against_kd(configs: pd.DataFrame) -> pd.Series:
    """Training CPU time of each student configuration over KD's at the same family and depth
    (NaN where no KD run of that architecture exists): what a method costs beyond plain KD."""
    kd = configs[(configs["method"] == "kd") & (configs["role"] == "student")]
    reference = kd.set_index(["family", "depth"])["train_cpu_minutes"]
    reference = reference[~reference.index.duplicated()]
    keys = pd.MultiIndex.from_frame(configs[["family", "depth"]])
    ratio = configs["train_cpu_minutes"].to_numpy() / reference.reindex(keys).to_numpy()
    return pd.Series(ratio, index=configs.index).where(configs["role"] == "student")


def provenance_warnings(runs: pd.DataFrame) -> list[str]:
    """Warnings for a table whose runs come from more than one commit or device (or from
    code with uncommitted changes): their numbers may not be comparable."""
    warnings = []
    for column, what in (("commit", "git commits"), ("device_name", "devices")):
        values = sorted(set(runs[column].dropna())) if column in runs else []
        if len(values) > 1:
            warnings.append(f"the runs of this table come from {len(values)} {what}: {', '.join(map(str, values))}")
    dirty = sorted({c for c in runs.get("commit", pd.Series(dtype=str)).dropna() if str(c).endswith("+dirty")})
    if dirty:
        warnings.append(f"runs were trained from code with uncommitted changes ({', '.join(dirty)})")
    return warnings


def protocol_text(runs: pd.DataFrame) -> str | None:
    """How a configuration's numbers were obtained, in words; several protocols joined by "; "."""
    texts = []
    for selection, fraction, oracle in zip(runs["selection"], runs["val_fraction"], runs["test_acc_oracle"]):
        if not isinstance(selection, str):  # a generator: nothing is selected
            continue
        notes = []
        if pd.notna(fraction):
            notes.append("all of train trains" if fraction == 0 else f"{fraction:.0%} of train held out for validation")
        if pd.notna(oracle):
            notes.append("oracle logged")
        rule = "selected: best validation epoch" if selection == "val" else "selected: last epoch"
        texts.append(rule + (f" ({', '.join(notes)})" if notes else ""))
    return "; ".join(dict.fromkeys(texts)) or None


def reference_teacher(configs: pd.DataFrame, runs: pd.DataFrame) -> pd.Series | None:
    teachers = configs[configs["role"] == "teacher"]
    if teachers.empty:
        return None
    named = set(runs.loc[runs["role"] == "student", "teacher_run"].dropna())
    references = teachers["run_ids"].map(lambda ids: sum(run_id in named for run_id in ids.split()))
    best = teachers.assign(references=references).sort_values(["references", "depth"], ascending=False, kind="stable")
    return best.drop(columns="references").iloc[0]


def add_ratios(configs: pd.DataFrame, teacher: pd.Series | None) -> pd.DataFrame:
    if teacher is None:
        return configs.assign(speedup_vs_teacher=float("nan"), compression_by_depth=float("nan"),
                              compression_by_params=float("nan"), compression_by_flops=float("nan"))
    return configs.assign(
        speedup_vs_teacher=teacher["latency_ms_cpu"] / configs["latency_ms_cpu"],
        # depth compresses only where depth differs (network slimming thins a network of the teacher's depth)
        compression_by_depth=(teacher["depth"] / configs["depth"]).where(
            (configs["depth"] != teacher["depth"]) | (configs["role"] == "teacher")),
        compression_by_params=teacher["params"] / configs["params"],
        compression_by_flops=teacher["flops_m"] / configs["flops_m"],
    )


def summary_table(tables: ExperimentTables) -> pd.DataFrame:
    return tables.configs[SUMMARY_COLUMNS].reset_index(drop=True)


def fid_table(tables: ExperimentTables) -> pd.DataFrame:
    return tables.configs[FID_COLUMNS].reset_index(drop=True)


def compression_table(tables: ExperimentTables, tolerance: float) -> pd.DataFrame:
    """Per student method, the smallest student configuration (fewest parameters: for depth
    variants the shallowest) whose mean test accuracy is at least the teacher's minus
    `tolerance` (absolute); student_depth "none" when none is."""
    teacher_acc = tables.teacher["test_acc_mean"] if tables.teacher is not None else float("nan")
    rows = []
    for method in method_order(tables.students["method"]):
        candidates = tables.students[tables.students["method"] == method]
        passing = candidates[candidates["test_acc_mean"] >= teacher_acc - tolerance - TOLERANCE_SLACK]
        row = {"method": method, "student_depth": "none", "tolerance": tolerance, "teacher_test_acc": teacher_acc,
               "teacher_depth": tables.teacher["depth"] if tables.teacher is not None else float("nan")}
        if not passing.empty:
            # the smallest: the shallowest of depth variants, and comparable with a thinned (slimmed) network
            chosen = passing.sort_values(["params", "depth", "test_acc_mean"], ascending=[True, True, False], kind="stable").iloc[0]
            row.update({column: chosen[column] for column in COMPRESSION_COLUMNS if column in chosen.index})
            row.update(student_depth=int(chosen["depth"]), accuracy_drop=teacher_acc - chosen["test_acc_mean"])
        rows.append(row)
    return pd.DataFrame(rows, columns=COMPRESSION_COLUMNS)
