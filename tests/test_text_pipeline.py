"""The text family in the pipeline: a VDCNN teacher, VDCNN students by scratch, KD and LIT,
evaluation, table and figures, end to end on CPU on a generated review CSV (no real data,
no download)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pandas as pd
import pytest

from workflow_helpers import STUDENT_EPOCHS, TEACHER_EPOCHS, make_project, pipeline_config, planned_jobs, snakemake

pytestmark = pytest.mark.slow

POSITIVE = ["great", "loved", "wonderful", "excellent", "superb", "delight"]
NEGATIVE = ["awful", "boring", "terrible", "dull", "broken", "waste"]
NEUTRAL = ["the", "film", "plot", "it", "was", "a", "movie", "story", "and", "cast"]


def snippet(rng: random.Random, cue_words: list[str]) -> str:
    """A short review: neutral filler around one or two words that carry the label."""
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 5))]
    for _ in range(rng.randint(2, 3)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cue_words))
    return " ".join(words)


def write_reviews(path: Path, count: int, seed: int) -> None:
    """`count` rows "label,text", label 0 (negative) or 1 (positive), balanced."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        for index in range(count):
            label = index % 2
            writer.writerow([label, snippet(rng, POSITIVE if label else NEGATIVE)])


def text_config(reviews: Path) -> dict:
    """The text-small recipe (config/runs/text-*.yaml) shrunk: a generated CSV, 64 characters,
    a tiny VDCNN-17 teacher (4 epochs) and a VDCNN-9 student per method (2 epochs)."""
    common = {
        "train.progress": "off",
        "train.precision": "fp32",  # the same numbers on every CPU
        "data.name": "csv_reviews",
        "data.options": {"path": str(reviews), "max_length": 64},
        "model.options": {"embedding_dim": 8, "widths": [8, 8, 16, 16], "fc_width": 32, "k": 4},
        "train.batch_size": 32,
    }
    return pipeline_config(
        {
            "tinytext": {
                "overrides": common,
                "teacher": {"config": "config/runs/text-teacher.yaml", "depth": 17,
                            "overrides": {**TEACHER_EPOCHS, "train.phases.train.epochs": 4}},
                "students": {
                    "config": "config/runs/text-student.yaml",
                    "methods": ["scratch", "lit"],
                    "depths": [9],
                    "seeds": [0],
                    "overrides": STUDENT_EPOCHS,
                },
            }
        }
    )


def test_vdcnn_experiment_end_to_end_on_generated_reviews(tmp_path):
    reviews = tmp_path / "reviews"
    write_reviews(reviews / "train.csv", 640, seed=0)
    write_reviews(reviews / "test.csv", 100, seed=1)
    project = make_project(tmp_path / "project", text_config(reviews))
    snakemake(project, "--cores", "2")

    out = project / "results" / "tinytext"
    for name in ["depth-vs-accuracy.png", "depth-vs-accuracy.pdf", "summary.csv", "summary.md",
                 "compression.csv", "compression.md"]:
        assert (out / f"tinytext-{name}").stat().st_size > 0, name
    table = pd.read_csv(project / "results" / "table.csv")
    assert set(table["family"]) == {"vdcnn"}
    assert sorted(zip(table["method"], table["depth"])) == [("lit", 9), ("scratch", 9), ("scratch", 17)]
    assert set(table["data"]) == {"csv_reviews"}
    teacher = table[table["role"] == "teacher"].iloc[0]
    # the words that carry the label are easy to learn: a teacher that did not read its
    # inputs (or read the wrong labels) would score 50%
    assert teacher["test_acc_selected"] >= 0.8, teacher.to_dict()
    students = table[table["role"] == "student"]
    assert students["params"].lt(teacher["params"]).all()
    # every method trained its student end to end, above chance (observed: 85-93%)
    assert students["test_acc_selected"].between(0.6, 1).all(), students[["method", "test_acc_selected"]]
    summary = pd.read_csv(out / "tinytext-summary.csv")
    assert {"scratch", "lit"} <= set(summary["method"])
    assert planned_jobs(project) == {}, "a second run must find nothing to do"
