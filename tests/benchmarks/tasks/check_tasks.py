"""Checks the fine-tuning benchmark tasks in this folder (classify, extract, dates). Standard library only.

    python tests/benchmarks/tasks/check_tasks.py

Per task: `task.json` has its fields; `train.jsonl` has 80 chat examples (system, user, assistant) whose system
prompt is the task's; `heldout.jsonl` has 60 items with `input` and `expected`; every expected output is valid for
the task and agrees with its input; inputs are short and unique; no held-out input equals, contains or shares a
sentence with a training input. Prints counts and the label distribution; exits 1 on any failure.
"""

from __future__ import annotations

import calendar
import collections
import datetime
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN_LINES = 80
HELDOUT_LINES = 60
MAX_WORDS = 40
LABELS = ("billing", "shipping", "technical", "account", "refund")
EXTRACT_KEYS = ["name", "city", "product", "quantity"]

NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "a dozen": 12,
    "a single": 1,
}
ORDINAL_WORDS = {
    word: day
    for day, word in enumerate(
        [
            "first",
            "second",
            "third",
            "fourth",
            "fifth",
            "sixth",
            "seventh",
            "eighth",
            "ninth",
            "tenth",
            "eleventh",
            "twelfth",
            "thirteenth",
            "fourteenth",
            "fifteenth",
            "sixteenth",
            "seventeenth",
            "eighteenth",
            "nineteenth",
            "twentieth",
        ],
        start=1,
    )
}
ORDINAL_WORDS.update({f"twenty-{w}": 20 + d for w, d in list(ORDINAL_WORDS.items()) if d < 10})
ORDINAL_WORDS.update({"thirtieth": 30, "thirty-first": 31})
MONTH_WORDS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTH_WORDS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTH_WORDS["sept"] = 9
DAY_NAMES = {name.lower(): i for i, name in enumerate(calendar.day_name)}


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, task: str, message: str) -> None:
        self.errors.append(f"{task}: {message}")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def sentences(text: str) -> set[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n", text)
    return {n for n in (normalise(p) for p in parts) if n}


def find_words(table: dict[str, int], text: str) -> list[int]:
    alternatives = "|".join(re.escape(w) for w in sorted(table, key=len, reverse=True))
    return [table[m.group(0).lower()] for m in re.finditer(rf"\b(?:{alternatives})\b", text, re.IGNORECASE)]


# ----------------------------------------------------------------------------------------------------------------
# per-task checks of an expected output against its input; each returns a list of problems
# ----------------------------------------------------------------------------------------------------------------


def check_classify(text: str, expected: str) -> list[str]:
    return [] if expected in LABELS else [f"label {expected!r} is not one of {LABELS}"]


def check_extract(text: str, expected: str) -> list[str]:
    try:
        value = json.loads(expected)
    except json.JSONDecodeError as e:
        return [f"expected is not JSON: {e}"]
    if not isinstance(value, dict) or list(value) != EXTRACT_KEYS:
        return [f"keys are {list(value) if isinstance(value, dict) else type(value).__name__}, not {EXTRACT_KEYS}"]
    problems = []
    if expected != json.dumps(value, separators=(", ", ": ")):
        problems.append("expected is not json.dumps(..., separators=(', ', ': ')) of itself")
    quantity = value["quantity"]
    if type(quantity) is not int or quantity < 1:
        problems.append(f"quantity {quantity!r} is not a positive int")
    for key in ("name", "city", "product"):
        field = value[key]
        if not isinstance(field, str) or not field:
            problems.append(f"{key} {field!r} is not a non-empty string")
        elif not re.search(rf"(?<!\w){re.escape(field)}(?!\w)", text):
            problems.append(f"{key} {field!r} is not written verbatim in the input")
    if isinstance(value["product"], str) and value["product"] != value["product"].lower():
        problems.append(f"product {value['product']!r} is not lowercase")
    if type(quantity) is int:
        digits = [int(n) for n in re.findall(r"(?<![\w.])(?:x)?(\d+)\b", text)]
        words = find_words(NUMBER_WORDS, text)
        if quantity not in digits + words:
            problems.append(f"quantity {quantity} is not in the input as digits or words")
        if len(set(digits + words)) > 1:
            problems.append(f"the input holds several numbers {sorted(set(digits + words))}")
    return problems


def check_dates(text: str, expected: str) -> list[str]:
    try:
        date = datetime.date.fromisoformat(expected)
    except ValueError as e:
        return [f"expected is not an ISO date: {e}"]
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", expected):
        return [f"expected {expected!r} is not YYYY-MM-DD"]
    problems = []
    if re.search(r"\b\d{1,2}\s*/\s*\d{1,2}\b", text):
        problems.append("the input has a numeric day/month form")
    years = [int(y) for y in re.findall(r"\b(\d{4})\b", text)]
    if years != [date.year]:
        problems.append(f"years in the input {years} are not [{date.year}]")
    months = set(find_words(MONTH_WORDS, text))
    if months != {date.month}:
        problems.append(f"months in the input {sorted(months)} are not [{date.month}]")
    days = {int(d) for d in re.findall(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", text)} or set(find_words(ORDINAL_WORDS, text))
    if days != {date.day}:
        problems.append(f"days in the input {sorted(days)} are not [{date.day}]")
    weekdays = set(find_words(DAY_NAMES, text))
    if weekdays and weekdays != {date.weekday()}:
        problems.append(f"weekday in the input is not {calendar.day_name[date.weekday()]}")
    return problems


CHECKS = {"classify": check_classify, "extract": check_extract, "dates": check_dates}
KINDS = {"classify": "classification", "extract": "extraction", "dates": "format"}


def check_task(name: str, report: Report) -> None:
    folder = HERE / name
    task = json.loads((folder / "task.json").read_text())
    for key in ("name", "kind", "system", "description"):
        if not isinstance(task.get(key), str) or not task[key]:
            report.fail(name, f"task.json lacks a non-empty {key!r}")
    if task.get("name") != name or task.get("kind") != KINDS[name]:
        report.fail(name, f"task.json name/kind are {task.get('name')!r}/{task.get('kind')!r}")
    system = task.get("system", "")
    must_name = {"classify": LABELS, "extract": EXTRACT_KEYS, "dates": ("YYYY-MM-DD",)}[name]
    for word in must_name:
        if word not in system:
            report.fail(name, f"the system prompt does not name {word!r}")

    train_rows = read_jsonl(folder / "train.jsonl")
    heldout_rows = read_jsonl(folder / "heldout.jsonl")
    if len(train_rows) != TRAIN_LINES:
        report.fail(name, f"train.jsonl has {len(train_rows)} lines, not {TRAIN_LINES}")
    if len(heldout_rows) != HELDOUT_LINES:
        report.fail(name, f"heldout.jsonl has {len(heldout_rows)} lines, not {HELDOUT_LINES}")

    train: list[tuple[str, str]] = []
    for i, row in enumerate(train_rows, 1):
        messages = row.get("messages") if set(row) == {"messages"} else None
        roles = [m.get("role") for m in messages] if isinstance(messages, list) else None
        if roles != ["system", "user", "assistant"] or any(set(m) != {"role", "content"} for m in messages):
            report.fail(name, f"train line {i}: messages are not exactly system, user, assistant")
            continue
        if messages[0]["content"] != system:
            report.fail(name, f"train line {i}: the system message is not task.json's system prompt")
        train.append((messages[1]["content"], messages[2]["content"]))
    heldout: list[tuple[str, str]] = []
    for i, row in enumerate(heldout_rows, 1):
        item = row.get("item") if set(row) == {"item"} else None
        if not isinstance(item, dict) or set(item) != {"input", "expected"}:
            report.fail(name, f"heldout line {i}: not {{'item': {{'input': ..., 'expected': ...}}}}")
            continue
        heldout.append((item["input"], item["expected"]))

    for split, rows in (("train", train), ("heldout", heldout)):
        seen: set[str] = set()
        for i, (text, expected) in enumerate(rows, 1):
            if not isinstance(text, str) or not isinstance(expected, str) or not text.strip():
                report.fail(name, f"{split} line {i}: input and expected must be non-empty strings")
                continue
            if len(text.split()) >= MAX_WORDS:
                report.fail(name, f"{split} line {i}: input has {len(text.split())} words (limit {MAX_WORDS - 1})")
            if expected != expected.strip() or "\n" in expected:
                report.fail(name, f"{split} line {i}: expected has extra whitespace")
            if normalise(text) in seen:
                report.fail(name, f"{split} line {i}: duplicate input {text!r}")
            seen.add(normalise(text))
            for problem in CHECKS[name](text, expected):
                report.fail(name, f"{split} line {i} ({text!r} -> {expected!r}): {problem}")

    train_texts = [normalise(t) for t, _ in train]
    train_sentences = set().union(*(sentences(t) for t, _ in train)) if train else set()
    for i, (text, _) in enumerate(heldout, 1):
        norm = normalise(text)
        for t in train_texts:
            if norm == t or t in norm:
                report.fail(name, f"heldout line {i}: {text!r} equals or contains training input {t!r}")
        shared = sentences(text) & train_sentences
        if shared:
            report.fail(name, f"heldout line {i}: {text!r} shares sentence(s) {sorted(shared)} with training")

    print(f"[{name}] kind={task.get('kind')} train={len(train)} heldout={len(heldout)}")
    if name == "classify":
        for split, rows in (("train", train), ("heldout", heldout)):
            counts = collections.Counter(expected for _, expected in rows)
            print(f"  {split:8s} labels: " + ", ".join(f"{label}={counts.get(label, 0)}" for label in LABELS))
            want = TRAIN_LINES if split == "train" else HELDOUT_LINES
            if any(counts.get(label, 0) != want // len(LABELS) for label in LABELS):
                report.fail(name, f"{split} labels are not balanced: {dict(counts)}")
    if name == "extract":
        parsed = {
            split: [json.loads(e) for _, e in rows if not check_extract(_, e)]
            for split, rows in (("train", train), ("heldout", heldout))
        }
        for key in ("name", "city", "product"):
            overlap = {v[key] for v in parsed["train"]} & {v[key] for v in parsed["heldout"]}
            print(
                f"  {key:8s} distinct train={len({v[key] for v in parsed['train']})} "
                f"heldout={len({v[key] for v in parsed['heldout']})} shared={sorted(overlap)}"
            )
            if key != "city" and overlap:
                report.fail(name, f"held-out {key}s also used in training: {sorted(overlap)}")
        quantities = collections.Counter(v["quantity"] for v in parsed["train"] + parsed["heldout"])
        print(f"  quantities: {dict(sorted(quantities.items()))}")
    if name == "dates":
        train_dates = {e for _, e in train}
        heldout_dates = {e for _, e in heldout}
        if train_dates & heldout_dates:
            report.fail(name, f"held-out dates also used in training: {sorted(train_dates & heldout_dates)}")
        example = re.search(r"\d{4}-\d{2}-\d{2}", system)
        if example and example.group(0) in train_dates | heldout_dates:
            report.fail(name, f"the system prompt's example date {example.group(0)} is also a data item")
        months = collections.Counter(datetime.date.fromisoformat(e).month for _, e in train + heldout)
        print(
            f"  distinct dates train={len(train_dates)} heldout={len(heldout_dates)} "
            f"shared={len(train_dates & heldout_dates)}"
        )
        print(f"  months (train+heldout): {dict(sorted(months.items()))}")


def main() -> int:
    report = Report()
    for name in CHECKS:
        check_task(name, report)
    if report.errors:
        print(f"\nFAILED: {len(report.errors)} problem(s)")
        for error in report.errors:
            print(f"  - {error}")
        return 1
    print("\nOK: all tasks pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
