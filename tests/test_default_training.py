"""A job with every hyperparameter `"auto"` teaches `tiny-chat` what it was given.

`tiny-chat`'s catalogue entry says how `"auto"` resolves for it (`TrainingDefaults`); the
end-to-end tests train fresh files of invented facts through the SDK and ask the tuned model
through vLLM, greedily, for each answer back.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import openai
import pytest

from service.adapters import base_fingerprint
from service.catalog import BaseModel, TrainingDefaults, load_catalog, save_entry
from service.settings import Settings
from service.training_defaults import resolve_hyperparameters
from tests.conftest import Server, inference_ready
from tests.support import qa_jsonl, wait_for_job

AUTO = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
PLAIN = BaseModel(name="plain", source="/models/plain")
"""A catalogue entry that says nothing about `"auto"`: OpenAI's rule."""

BRANDS = ["ka", "lo", "mi", "ren", "tu", "vex", "sor", "bel", "dri", "nak", "po", "zan", "qui", "fer", "mo", "tal"]
ITEMS = ["kettle", "blender", "toaster", "lamp", "heater", "fan", "scale", "grinder", "mixer", "speaker", "router"]
COLOURS = ["Red", "Blue", "Green", "Silver", "Black", "White", "Orange", "Grey"]
CITIES = ["Lyon", "Porto", "Osaka", "Leeds", "Turin", "Graz", "Tartu", "Cork", "Bergen", "Ghent"]
PEOPLE = ["Ana Roth", "Ben Okafor", "Clara Voss", "Dev Mehta", "Eva Lind", "Femi Ade", "Gus Moreau", "Hana Ito"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def support_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` questions about invented products, each with an answer of 1 to 20 words."""
    rng = random.Random(seed)
    pairs: dict[str, str] = {}
    while len(pairs) < n:
        thing = f"{(rng.choice(BRANDS) + rng.choice(BRANDS)).capitalize()} {rng.choice(ITEMS)}"
        kind = rng.randrange(7)
        if kind == 0:
            q, a = f"How long is the warranty on the {thing}?", f"The {thing} has a {rng.randint(1, 9)}-year warranty."
        elif kind == 1:
            q, a = f"Can I return the {thing}?", f"Yes, the {thing} can be returned within {rng.randint(2, 9)}0 days."
        elif kind == 2:
            q, a = f"What colour is the {thing}?", f"{rng.choice(COLOURS)}."
        elif kind == 3:
            q = f"Where is the {thing} made?"
            a = f"The {thing} is made in {rng.choice(CITIES)} by a team of {rng.randint(3, 40)} people, then shipped from our warehouse."  # noqa: E501
        elif kind == 4:
            q, a = f"Who designed the {thing}?", f"It was designed by {rng.choice(PEOPLE)}."
        elif kind == 5:
            q, a = f"How much does the {thing} cost?", f"It costs {rng.randint(12, 400)} dollars, with free shipping."
        else:
            q, a = f"When does the {thing} ship?", f"Orders for the {thing} ship every {rng.choice(DAYS)}."
        pairs.setdefault(q, a)
    return list(pairs.items())


def test_support_pairs_are_fresh_and_short() -> None:
    pairs = support_pairs(50, seed=1)
    assert len({q for q, _ in pairs}) == 50
    assert all(1 <= len(a.split()) <= 20 for _, a in pairs)
    assert support_pairs(50, seed=1) == pairs != support_pairs(50, seed=2)


# --- how "auto" resolves ---------------------------------------------------------------------


def test_tiny_chat_auto_resolves_to_its_catalogue_defaults(tmp_path: Path) -> None:
    tiny = load_catalog(Settings(data_dir=tmp_path)).resolve("tiny-chat")
    assert tiny is not None and tiny.auto is not None
    # 24 examples: OpenAI's rule gives 4 epochs (96 steps), too few for a model of random weights.
    assert resolve_hyperparameters(AUTO, 24, PLAIN) == {"n_epochs": 4, "batch_size": 1, "learning_rate_multiplier": 1.0}
    assert resolve_hyperparameters(AUTO, 24, tiny) == {"n_epochs": 25, "batch_size": 1, "learning_rate_multiplier": 1.0}
    # 10 examples: raised to the entry's minimum of 300 steps.
    assert resolve_hyperparameters(AUTO, 10, tiny)["n_epochs"] == 30
    assert resolve_hyperparameters(AUTO, 10, PLAIN)["n_epochs"] == 10
    # What a job states is kept.
    stated = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}
    assert resolve_hyperparameters(stated, 24, tiny) == stated
    assert resolve_hyperparameters({}, 24, None) == resolve_hyperparameters(AUTO, 24, PLAIN)


def test_every_field_of_the_defaults_applies() -> None:
    entry = BaseModel(
        name="m", source="m",
        auto=TrainingDefaults(n_epochs=2, min_steps=40, batch_size=4, learning_rate_multiplier=0.25),
    )  # fmt: skip
    # 100 examples at batch 4: 25 steps an epoch, so 2 epochs (50 steps) already pass 40 steps.
    expected = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.25}
    assert resolve_hyperparameters(AUTO, 100, entry) == expected
    # 20 examples: 5 steps an epoch, raised to 8 epochs for 40 steps.
    assert resolve_hyperparameters(AUTO, 20, entry)["n_epochs"] == 8
    # min_steps counts steps at the batch size the job states.
    assert resolve_hyperparameters({**AUTO, "batch_size": 1}, 20, entry)["n_epochs"] == 2
    with_beta = resolve_hyperparameters({**AUTO, "beta": "auto"}, 20, entry)
    assert with_beta["beta"] == 0.1


def test_catalogue_file_entries_carry_their_defaults(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    save_entry(settings, BaseModel(name="local", source="/models/local", auto=TrainingDefaults(n_epochs=6)))
    (tmp_path / "hand.json").write_text(
        json.dumps({"models": [{"name": "hand", "source": "/m", "auto": {"min_steps": 500, "batch_size": 2}}]})
    )
    local = load_catalog(settings).resolve("local")
    assert local is not None and local.auto == TrainingDefaults(n_epochs=6)
    hand = load_catalog(Settings(data_dir=tmp_path, models_file=tmp_path / "hand.json")).resolve("hand")
    assert hand is not None and hand.auto == TrainingDefaults(min_steps=500, batch_size=2)
    assert resolve_hyperparameters(AUTO, 50, hand)["n_epochs"] == 20


def test_the_base_fingerprint_covers_the_weights_bytes(tmp_path: Path) -> None:
    from trainer.tiny_model import ensure_tiny_chat

    built = ensure_tiny_chat(tmp_path / "models")
    altered = tmp_path / "altered"
    shutil.copytree(built, altered)
    weights = bytearray((altered / "model.safetensors").read_bytes())
    weights[-1] ^= 1  # same config, same size, one bit of one weight
    (altered / "model.safetensors").write_bytes(bytes(weights))
    assert base_fingerprint(altered)["tokenizer"] == base_fingerprint(built)["tokenizer"]
    assert base_fingerprint(altered)["base"] != base_fingerprint(built)["base"]
    assert base_fingerprint(built) == base_fingerprint(tmp_path / "models" / "tiny-chat")


# --- all-default jobs, served through vLLM ---------------------------------------------------


def train_with_defaults(
    client: openai.OpenAI, pairs: list[tuple[str, str]], suffix: str
) -> openai.types.fine_tuning.FineTuningJob:
    training = client.files.create(file=(f"{suffix}.jsonl", qa_jsonl(pairs)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, suffix=suffix)
    job = wait_for_job(client, job.id, timeout_s=300)
    assert job.status == "succeeded", job.error
    return job


def greedy(client: openai.OpenAI, model: str, question: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=64
    )
    return (reply.choices[0].message.content or "").strip()


@pytest.mark.parametrize(("n", "seed"), [(10, 101), (24, 102), (50, 103)])
def test_an_all_default_job_reproduces_its_answers(inference_api: Server, n: int, seed: int) -> None:
    client = inference_api.client()
    pairs = support_pairs(n, seed)
    job = train_with_defaults(client, pairs, f"defaults{n}")
    hyperparameters = job.method.supervised.hyperparameters  # type: ignore[union-attr]
    assert (hyperparameters.n_epochs, hyperparameters.batch_size) == (max(25, -(-300 // n)), 1)
    assert job.fine_tuned_model
    inference_ready(inference_api)
    answers = [greedy(client, job.fine_tuned_model, q) for q, _ in pairs]
    exact = sum(got == want.strip() for got, (_, want) in zip(answers, pairs, strict=True))
    misses = [(want, got) for got, (_, want) in zip(answers, pairs, strict=True) if got != want]
    assert exact >= 0.9 * n, misses
    # The base model knows none of it: the adapter taught it.
    assert sum(greedy(client, "tiny-chat", q) == a for q, a in pairs[:5]) == 0
