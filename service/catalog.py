"""The base-model catalogue: public model names, their weights, and aliases.

A client names a base model the way it would with OpenAI (`gpt-4o-mini-2024-07-18`); the
operator decides what that means here. The catalogue is a JSON file (`FTSERVE_MODELS_FILE`,
default `$FTSERVE_DATA_DIR/models.json`) merged over the built-in `tiny-chat`:

    {"models": [{"name": "qwen2.5-0.5b", "source": "/models/Qwen2.5-0.5B-Instruct",
                 "aliases": ["gpt-4o-mini-2024-07-18"], "serve": true, "learning_rate": 0.0002,
                 "auto": {"n_epochs": 4}}]}

`source` is a Hugging Face id, a local directory, a `.gguf` file, `builtin:tiny-chat` or
`builtin:tiny-embed`. `ftserve models add` checks the source first (`trainer.model_import`) and
stores a GGUF converted, recording where in `weights`.
`auto` says how a job's `"auto"` hyperparameters resolve for the model (`TrainingDefaults`);
without it, OpenAI's rule. `task: "embed"` marks an embeddings model: vLLM serves it with its
pooling runner on `/v1/embeddings`, and the `cosine` text-similarity grader uses the first one
(`embeddings_model`). None is listed by default (each costs a vLLM process); the built-in
`tiny-embed` is added with `ftserve models add tiny-embed --source builtin:tiny-embed --task embed`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from service.settings import Settings

Task = Literal["generate", "embed"]
TASKS: tuple[Task, ...] = ("generate", "embed")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Names appear inside `ft:{base}:…` ids, so no colons or slashes."""


@dataclass(frozen=True)
class TrainingDefaults:
    """How a job's `"auto"` hyperparameters resolve for one base model (`service.training_defaults`).

    A field left `None` keeps OpenAI's rule for that hyperparameter; numbers a job states are
    never changed.

    Example:
        >>> TrainingDefaults(n_epochs=25, min_steps=300).batch_size is None
        True
    """

    n_epochs: int | None = None
    """Epochs for `n_epochs: "auto"`, whatever the number of examples."""
    min_steps: int | None = None
    """With `n_epochs: "auto"`, epochs are raised until the job makes at least this many optimizer
    steps, so that a small file is seen often enough."""
    batch_size: int | None = None
    """Examples per optimizer step for `batch_size: "auto"`."""
    min_batch_size: int | None = None
    """With `batch_size: "auto"` and no `batch_size` here, OpenAI's rule (about 0.2% of the
    examples) is raised to at least this many examples per step."""
    learning_rate_multiplier: float | None = None
    """Multiplier of the entry's `learning_rate` for `learning_rate_multiplier: "auto"`."""


TINY_CHAT_DEFAULTS = TrainingDefaults(n_epochs=25, min_steps=300)
"""`tiny-chat`'s weights are random: an adapter on it learns answers by heart or not at all, and
needs about 25 passes over a file of short answers to reproduce them exactly under greedy decoding
(measured on files of 10 to 50 invented question/answer pairs: 8 passes gave under half of 50
answers, 16 about 94%, 25 all of them). A file of 10 examples gets 30 epochs, 300 steps. Batch 1
(OpenAI's rule below 750 examples) and the learning rate 5e-3 stay: 1e-2 diverged on 50 examples,
and a LoRA rank of 16 instead of 8 learned no faster. OpenAI's rule (4 epochs for 24 examples)
taught it nothing usable."""


PRETRAINED_DEFAULTS = TrainingDefaults(min_batch_size=4)
"""What `ftserve models add` writes for a pretrained model: OpenAI's rule for epochs (3, more on
small files), at least 4 examples per step, with the entry's learning rate
`PRETRAINED_LEARNING_RATE`. Measured on SmolLM2-135M-Instruct (`docs/performance.md`): on 80-line
files, batch 4 at 1e-3 scored as well as batch 1 at 2e-4 (OpenAI's rule) on held-out inputs, or
better, in a quarter of the optimizer steps, and a packed step of 4 examples puts more tokens
through each matrix product than 4 steps of one."""

PRETRAINED_LEARNING_RATE = 1e-3
"""The base learning rate `ftserve models add` writes for a pretrained model (LoRA rank 8): 2e-4,
3e-4... 1e-3 all scored within noise of each other on the held-out tasks, and 1e-3 learns the
format in the fewest steps at batch 4."""


@dataclass(frozen=True)
class BaseModel:
    """One entry of the catalogue.

    Example:
        >>> BaseModel(name="tiny-chat", source="builtin:tiny-chat").is_builtin
        True
    """

    name: str
    """The public name clients use, and the `{base}` of fine-tuned model ids."""
    source: str
    """Hugging Face id, local directory, `.gguf` file, or `builtin:<name>`."""
    aliases: tuple[str, ...] = ()
    """Other names that resolve to this entry."""
    serve: bool = True
    """Whether `ftserve up` starts an inference server for it."""
    learning_rate: float = 2e-4
    """Base learning rate; a job's `learning_rate_multiplier` scales it."""
    max_seq_len: int = 4096
    """Training examples longer than this many tokens are truncated."""
    tool_call_parser: str | None = None
    """vLLM's parser for the model's tool-call format (`hermes`, `llama3_json`, `mistral`…). Set,
    requests with `tools` and `tool_choice: "auto"` get `tool_calls` back; unset, vLLM refuses them."""
    auto: TrainingDefaults | None = None
    """How `"auto"` hyperparameters resolve for this model; `None`: OpenAI's rule."""
    weights: str | None = None
    """Object-storage prefix of the model directory ftserve converted from a GGUF `source`
    (`ftserve models add`); trainers and inference servers download it. None: read `source`."""
    chat_template: str | None = None
    """A Jinja chat template that replaces (or supplies) the tokenizer's, for training and serving."""
    task: Task = "generate"
    """`generate`: a chat/completion model, served with LoRA adapters and fine-tunable. `embed`: an
    embeddings model, served by vLLM's pooling runner on `/v1/embeddings` only (no adapters, no
    fine-tuning); the `cosine` grader embeds with the first such entry."""

    def __post_init__(self) -> None:
        # The catalogue file holds `auto` as a JSON object.
        if isinstance(self.auto, dict):
            object.__setattr__(self, "auto", TrainingDefaults(**self.auto))
        if self.task not in TASKS:
            raise ValueError(f"invalid task {self.task!r} for model {self.name!r}: one of {', '.join(TASKS)}")

    @property
    def is_builtin(self) -> bool:
        return self.source.startswith("builtin:")


BUILTIN = (
    BaseModel(
        name="tiny-chat", source="builtin:tiny-chat", learning_rate=5e-3, max_seq_len=1024, auto=TINY_CHAT_DEFAULTS
    ),
)


@dataclass
class Catalog:
    models: list[BaseModel] = field(default_factory=lambda: list(BUILTIN))

    def resolve(self, name: str) -> BaseModel | None:
        """The entry called `name` or aliased to it."""
        for model in self.models:
            if name == model.name or name in model.aliases:
                return model
        return None

    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def embeddings_model(self) -> BaseModel | None:
        """The first entry marked `task: embed`: what the `cosine` grader embeds with."""
        return next((m for m in self.models if m.task == "embed"), None)


def catalog_path(settings: Settings) -> Path:
    return settings.models_file or settings.resolved_data_dir() / "models.json"


_loaded: dict[Path, tuple[tuple[int, int, int], Catalog]] = {}


def load_catalog(settings: Settings) -> Catalog:
    """The built-ins, with the file's entries added or replacing those of the same name.

    Read again only when the file changes, so that calling this on every request costs a `stat`.
    """
    path = catalog_path(settings)
    # The file is replaced, never edited in place (`save_entry`), so a new inode means new content.
    info = path.stat() if path.exists() else None
    stamp = (info.st_ino, info.st_mtime_ns, info.st_size) if info else (-1, -1, -1)
    cached = _loaded.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    catalog = _read_catalog(path)
    _loaded[path] = (stamp, catalog)
    return catalog


def _read_catalog(path: Path) -> Catalog:
    models = {m.name: m for m in BUILTIN}
    if path.exists():
        for raw in json.loads(path.read_text()).get("models", []):
            entry = BaseModel(**{**raw, "aliases": tuple(raw.get("aliases", ()))})
            models[entry.name] = entry
    return Catalog(list(models.values()))


def save_entry(settings: Settings, entry: BaseModel) -> None:
    """Add or replace an entry in the catalogue file (written atomically)."""
    for name in (entry.name, *entry.aliases):
        if not NAME.match(name):
            raise ValueError(f"invalid model name {name!r}: letters, digits, '.', '_' and '-' only")
    path = catalog_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()).get("models", []) if path.exists() else []
    others = [m for m in current if m.get("name") != entry.name]
    taken = {a for m in load_catalog(settings).models if m.name != entry.name for a in (m.name, *m.aliases)}
    clash = taken & {entry.name, *entry.aliases}
    if clash:
        raise ValueError(f"already used by another model: {', '.join(sorted(clash))}")
    data = {"models": [*others, {**asdict(entry), "aliases": list(entry.aliases)}]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".models-")
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, path)
