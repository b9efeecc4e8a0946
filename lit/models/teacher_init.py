"""Students initialised from their teacher's blocks (`method.student_init: teacher_blocks`).

A student with fewer blocks per section than its teacher starts, section by section, from
a subset of the teacher's blocks of that section, as DistilBERT (every other layer) and
distil-whisper (first and last layers, evenly spaced between) initialise their students:

- `first`: the section's first blocks;
- `last`: its last blocks;
- `spaced`: evenly spaced, the first and the last included (one block: the first, which
  holds the section's downsampling where a family has one).

A block is copied only where every parameter and buffer has the teacher block's shape (the
first block of a ResNet section narrows or widens, the others keep the width, so `last`
can leave a first block fresh); the record says, for every student block, which teacher
block it copied, or None. The stem and head are not touched here (LIT copies them itself,
`method.copy_stem_head`)."""

from __future__ import annotations

from torch import nn

CHOICES = ("first", "last", "spaced")


def chosen_blocks(teacher_blocks: int, student_blocks: int, choice: str) -> list[int]:
    """The teacher block each of a section's student blocks starts from (as many as both have)."""
    count = min(teacher_blocks, student_blocks)
    if choice == "first":
        return list(range(count))
    if choice == "last":
        return list(range(teacher_blocks - count, teacher_blocks))
    if choice == "spaced":
        if count == 1:
            return [0]
        return [round(i * (teacher_blocks - 1) / (count - 1)) for i in range(count)]
    raise ValueError(f"student_init_blocks: expected one of {', '.join(CHOICES)}, got {choice!r}")


def blocks_of(section: nn.Module) -> list[nn.Module]:
    return list(section) if isinstance(section, nn.Sequential) else [section]


def same_shapes(a: nn.Module, b: nn.Module) -> bool:
    a_state, b_state = a.state_dict(), b.state_dict()
    return a_state.keys() == b_state.keys() and all(a_state[k].shape == b_state[k].shape for k in a_state)


def teacher_block_map(student: nn.Module, teacher: nn.Module, choice: str) -> list[list[int | None]]:
    """Per section, per student block: the teacher block it starts from, or None where
    their shapes differ (or the teacher has fewer blocks). Copies nothing."""
    if len(student.sections) != len(teacher.sections):
        raise ValueError(f"student_init: the student has {len(student.sections)} sections, the teacher {len(teacher.sections)}")
    mapping = []
    for student_section, teacher_section in zip(student.sections, teacher.sections):
        students, teachers = blocks_of(student_section), blocks_of(teacher_section)
        chosen = chosen_blocks(len(teachers), len(students), choice)
        row: list[int | None] = [None] * len(students)
        for index, source in enumerate(chosen):
            row[index] = source if same_shapes(students[index], teachers[source]) else None
        mapping.append(row)
    if all(source is None for row in mapping for source in row):
        raise ValueError("no student block has the shapes of the teacher block chosen for it: "
                         "teacher_blocks needs a teacher of the student's family and widths")
    return mapping


def init_from_teacher_blocks(student: nn.Module, teacher: nn.Module, choice: str, copy: bool = True) -> list[list[int | None]]:
    """Copy into the student the teacher blocks `teacher_block_map` chose (with `copy`;
    without, only the map: a resumed run's weights come from its saved state)."""
    mapping = teacher_block_map(student, teacher, choice)
    if copy:
        for row, student_section, teacher_section in zip(mapping, student.sections, teacher.sections):
            students, teachers = blocks_of(student_section), blocks_of(teacher_section)
            for index, source in enumerate(row):
                if source is not None:
                    students[index].load_state_dict(teachers[source].state_dict())
    return mapping
