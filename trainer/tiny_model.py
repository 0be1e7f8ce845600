"""`tiny-chat`: a small Llama with its own byte-level BPE tokenizer and chat template.

Built deterministically on first use, without any download, so that the quickstart, the tests
and the benchmarks run offline on a CPU in seconds. Real deployments name real models in the
catalogue; the code that loads them is the same.

The weights are random: a LoRA adapter learns a small file of answers by heart on top of them
(see the catalogue's training defaults for `tiny-chat`). A brief pre-training at build time on
generated chat text was measured too: 400 steps (30 s on one core) left LoRA learning slower,
not faster, so the model stays random and the build takes a second.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

VERSION = 3
"""Bump when the recipe changes: a cached model of another version is rebuilt."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% endif %}"
    "{% if message.get('tool_calls') %}{% for call in message['tool_calls'] %}"
    "<tool_call>{{ call['function']['name'] }} {{ call['function']['arguments'] }}</tool_call>"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


_WORDS = """
the a an and or but if then so because when while where what who whom whose which why how is
are was were be been being am do does did done have has had will would can could shall should
may might must not no yes all any some each every both either none one two three four five six
seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand first second third
last next other another same new old good bad great small large big little long short high low
early late young full empty hot cold warm cool dry wet easy hard free busy open closed ready sure
right wrong true false real simple clear quick slow i you he she it we they me him her us them my
your his its our their this that these those here there now today tomorrow yesterday always
never often sometimes soon again also only just even still already very too quite really about
above after against along among around at before behind below between by down during except for
from in inside into like near of off on out outside over past since through to toward under until
up upon with within without per time year month week day hour minute morning evening night people
person man woman child family friend team customer user client staff manager owner support service
help question answer problem issue reason way thing part place point case fact number name price
cost fee order account payment refund return delivery shipping store shop product item model
version size colour color weight battery power screen button cable plug box bag card phone email
message address street city country office home room door window table chair kettle lamp bottle
cup glass plate food water coffee tea milk bread fruit car bike train bus plane ticket seat trip
travel hotel booking visit meeting plan report list file page book letter note form code key
password login app website link data system make made get got give gave take took come came go
went see saw know knew think thought say said tell told ask asked use used find found want need
try call work feel leave put keep let begin seem show hear play run move live believe bring
happen write sit stand lose pay meet include continue set learn change lead understand watch
follow stop create speak read allow add spend grow offer remember love consider appear buy wait
serve send expect build stay fall cut reach remain suggest raise pass sell require decide pull
ship cover replace repair charge check clean connect contact cancel fix install update upgrade
reset restart sign receive provide arrive design designed deliver warranty guarantee policy rule
days weeks months years hours minutes dollars euros pounds percent inches metres red blue green
yellow black white grey silver gold orange purple pink brown monday tuesday wednesday thursday
friday saturday sunday january february march april june july august september october november
december spring summer autumn winter north south east west left top bottom front back side centre
middle end start please thanks thank sorry hello hi welcome goodbye okay weather sunny rainy
capital paris london rome berlin madrid tokyo system assistant tool function
"""
WORDS = _WORDS.split()
"""Everyday English the tokenizer learns whole words from (with their capitalised forms)."""

_SYLLABLES = "ba be bi bo ka ke ki ko la le li lo ma me mi mo na ne ni no ra re ri ro sa se si so ta te ti to"
SYLLABLES = (_SYLLABLES + " va vi za zo dra tri vor gal fen quin xel").split()


def _corpus(seed: int) -> list[str]:
    """Deterministic text for the tokenizer: the words, then sentences of them around invented names.

    Trained on a few lines of its own, the first tokenizer split ordinary words into letters
    ("the" was two tokens, "warranty" five): an answer took twice the tokens and a LoRA adapter
    needed several times the steps to learn it. Invented names teach merges for the syllables
    of names a user's facts are full of.
    """
    rng = random.Random(seed)
    lines = [" ".join(WORDS)] * 4 + [" ".join(w.capitalize() for w in WORDS)] * 2
    for _ in range(3000):
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        lines.append(f"{words.capitalize()} the {name} {rng.choice(WORDS)}, {rng.randint(0, 999)}?")
    lines += [f"What is {i}? It is number {i}, a {i}-year plan." for i in range(200)]
    lines += ["".join(chr(c) for c in range(32, 127))]
    return lines


def build_tiny_chat(target: Path, *, seed: int = 0) -> Path:
    """Write the tokenizer and randomly initialised weights (seeded) into `target`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        # Larger than the usual 0.02: with RMSNorm capping hidden norms, small random output
        # weights cap the logits too, and a LoRA on top could never become confident.
        initializer_range=0.1,
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(target)
    model.save_pretrained(target)
    model.generation_config.save_pretrained(target)
    (target / "ftserve-tiny-chat.json").write_text(json.dumps({"version": VERSION, "seed": seed}))
    return target


def ensure_built(cache_dir: Path, name: str, version: int, build: Callable[[Path], object]) -> Path:
    """`cache_dir/name`, built once by `build(directory)` (in a staging directory, then renamed)
    unless its marker `ftserve-{name}.json` already records `version`."""
    target = cache_dir / name
    marker = target / f"ftserve-{name}.json"
    if marker.exists() and json.loads(marker.read_text()).get("version") == version:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
    try:
        build(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_tiny_chat(cache_dir: Path) -> Path:
    """The built model under `cache_dir/tiny-chat`, building it once (atomically) if absent."""
    return ensure_built(cache_dir, "tiny-chat", VERSION, build_tiny_chat)
