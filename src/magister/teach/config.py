"""The teach configuration: one YAML file; every field is also a `magister teach` flag or `--set FIELD=VALUE`.

    seed: data/trec_seed.jsonl        # labelled training examples (any exam file)
    exam: data/trec_test.jsonl        # the held-out exam
    teacher: llamacpp:smollm2
    student: smollm2                  # the embedded GGUF, or a transformers model directory
    rounds: 1
    mine: folds                       # errors out of fold, against the seed's human labels
    strategies: [contrast]            # label-conditioned: inputs of the gold label a reader could mistake
    budget: {calls: 400}
    train: {epochs: 5, lora_r: 16}

The defaults are the configuration the teaching benchmark (`benchmarks/teach_trec.py`) measured as its
Magister arm, training settings included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from magister.errors import ConfigError, DataError
from magister.jsonl import read_lines


class Strict(BaseModel):
    """A config section: unknown fields are errors, and a yes/no is never taken for a number."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: object, info: ValidationInfo) -> object:
        field = cls.model_fields.get(info.field_name or "")
        annotation = str(field.annotation) if field else ""
        if isinstance(value, bool) and ("int" in annotation or "float" in annotation) and "bool" not in annotation:
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


class Fields(Strict):
    """Column names of the seed and exam files (guessed from common names when unset)."""

    input: str | None = None
    reference: str | None = None


class Budget(Strict):
    """What the teacher may spend over the whole run; None is no limit."""

    calls: int | None = Field(None, ge=1, description="Teacher calls (writing and verifying).")
    tokens: int | None = Field(None, ge=1, description="Teacher tokens, prompt and completion.")


class TrainConfig(Strict):
    """How the student is fine-tuned each round."""

    method: Literal["lora", "full"] = "lora"
    lora_r: int = Field(16, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1, le=4096)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    epochs: float = Field(5.0, gt=0, le=1000)
    learning_rate: float = Field(1e-3, gt=0, le=10)
    batch_size: int = Field(8, ge=1, le=4096)
    max_length: int = Field(128, ge=8, le=131072, description="Tokens per example; longer prompts lose their start.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    objective: Literal["sft", "distill"] = Field(
        "sft", description="What the answer tokens are trained toward: the reference tokens (`sft`, cross-entropy), "
                           "or the next-token distributions of `distill_teacher` at those positions (`distill`, "
                           "logit distillation; the teacher must share the student's tokenizer).")
    distill_teacher: str | None = Field(None, description="A transformers model directory for `objective: distill`.")
    distill_beta: float = Field(0.0, ge=0.0, le=1.0, description="The divergence of `distill`: 0 forward "
                                                                 "KL(teacher || student), 1 reverse KL, between: "
                                                                 "a generalised Jensen-Shannon divergence.")
    padding_free: bool = Field(False, description="`sft` batches as one row without padding tokens (each example "
                                                  "still attends only to itself); slower than padded rows on CPU.")

    @model_validator(mode="after")
    def _distill_needs_a_teacher(self) -> "TrainConfig":
        if self.objective == "distill" and not self.distill_teacher:
            raise ValueError("objective 'distill' needs distill_teacher: a model directory sharing the tokenizer")
        return self


class TeachConfig(Strict):
    """Everything one `magister teach` run needs."""

    seed: Path = Field(description="Labelled training examples: the seed set.")
    exam: Path = Field(description="The held-out exam the student sits after every round.")
    fields: Fields = Field(default_factory=Fields)
    teacher: str = "llamacpp:smollm2"
    student: str = Field("smollm2", description="'smollm2' (the embedded GGUF), a GGUF file or a model directory.")
    verifier: str | None = Field(None, description="Model that checks new examples; default the teacher.")
    rounds: int = Field(1, ge=0, le=100, description="Teaching rounds after round 0 (the benchmark measured 1).")
    strategies: list[Literal["contrast", "pairs", "similar", "rephrase", "explain", "new", "replay"]] = Field(
        default_factory=lambda: ["contrast"],
        description="How the teacher turns an error into new examples; `contrast` writes inputs of the human "
                    "label that could be mistaken for the student's answer; `pairs` also writes the mirror "
                    "(inputs of the student's answer that could be mistaken for the human label), so the "
                    "additions stay balanced over each confused pair of labels.")
    per_item: int = Field(4, ge=1, le=10, description="New examples the teacher writes per mined item.")
    show_wrong_answer: bool = Field(True, description="Show the teacher the student's wrong answer.")
    label_descriptions: dict[str, str] = Field(
        default_factory=dict, description="What each label means, shown to the teacher when it writes "
                                          "(`contrast`) and to the verifier.")
    mine: Literal["folds", "seed", "all", "probe"] = Field(
        "folds", description="Where the student's errors come from: `folds` (k students, each trained without "
                             "one fold of the seed, sit that fold: every error is against a person's label), "
                             "the seed items in-sample (LLM2LLM), all training data so far, or a fresh probe exam "
                             "the teacher writes each round.")
    folds: int = Field(4, ge=2, le=10, description="Folds of the seed for `mine: folds` and the dev score.")
    fold_epochs: float | None = Field(3.0, gt=0, le=1000, description="Training epochs of the fold students "
                                                             "(null: train.epochs).")
    dev: Path | None = Field(None, description="A labelled dev file: the dev score is the student's accuracy on it "
                                               "(default: out-of-fold accuracy on the seed).")
    probe_size: int = Field(120, ge=1, le=100_000, description="Items of each round's probe exam (`mine: probe`).")
    probe_per_call: int = Field(10, ge=1, le=30, description="Probe items the teacher writes per call.")
    probe_near_misses: float = Field(
        0.0, ge=0.0, le=1.0, description="Also mine the probe items the student got right by the smallest "
                                         "log-probability margin, up to this share of the probe (near misses).")
    dedupe: Literal["rouge", "embedding", "off"] = "rouge"
    dedupe_threshold: float = Field(0.7, gt=0.0, le=1.0)
    verify: Literal["off", "teacher", "majority", "neighbours"] = Field(
        "teacher", description="Who checks each new example's label: the verifier model (`teacher`: one answer, "
                               "`majority`: several samples), the nearest labelled seed examples in the embedded "
                               "SmolLM2's embedding space (`neighbours`: no model call), or nobody.")
    verify_samples: int = Field(3, ge=1, le=50, description="Samples for `verify: majority`.")
    verify_shots: int = Field(12, ge=0, le=500, description="Seed examples shown to the verifier as worked examples.")
    verify_check: bool = Field(True, description="Check the verifier on seed items it was not shown before "
                                                 "trusting it (see verify_gate).")
    verify_gate: Literal["student", "majority"] = Field(
        "student", description="What the verifier must beat to be trusted: the out-of-fold student's accuracy "
                               "(else it may only veto, at a confidence calibrated on the seed), or the most "
                               "common label (the old gate).")
    contamination_ngram: int = Field(8, ge=3, le=100, description="A new input sharing a run of this many words with "
                                                          "an exam item is contamination.")
    retrain: Literal["base", "continue"] = Field("base", description="Each round from the base model, or from "
                                                                     "the last round's student.")
    patience: int | None = Field(None, ge=1, le=100, description="Stop after this many rounds without a better dev score "
                                                          "(the exam never decides).")
    select: Literal["dev", "last"] = Field(
        "dev", description="Which round's student is the result: the best dev score (ties: the earlier round), "
                           "or the last one trained.")
    budget: Budget = Field(default_factory=Budget)
    temperature: float = Field(0.7, ge=0.0, le=5.0, description="Teacher sampling temperature when writing.")
    train: TrainConfig = Field(default_factory=TrainConfig)
    out: Path = Field(Path("runs/teach"), description="Directory of this run: rounds, models, report.")
    exam_limit: int | None = Field(None, ge=1, description="Use only the first N exam items.")
    ray: bool = Field(False, description="The students sit their exams on a pool of Ray actors (2, half a CPU "
                                         "each): a local Ray, or the cluster RAY_ADDRESS names "
                                         "(pip install 'magister[ray]'). How exams are sat, not what is taught: "
                                         "a run may resume with it changed.")


def parse_sets(items: list[str]) -> dict[str, object]:
    """`--set FIELD=VALUE` pairs as overrides: dotted field names, each value read as YAML (numbers, lists, maps)."""
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write FIELD=VALUE, e.g. --set temperature=0.5")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({getattr(error, 'problem', error)})") \
                from None
    return out


def _read_yaml(text: str, label: str) -> tuple[object, dict[str, int]]:
    """Parse YAML as `yaml.safe_load` does, but a key given twice in one mapping is an error (YAML's own
    rule, which PyYAML does not enforce: the last would win), and every key's line is kept, dotted
    (`train.epochs` -> 12), so a bad value can be named by its line."""
    import yaml

    lines: dict[str, int] = {}

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, prefix: str = "") -> dict[object, object]:
        out: dict[object, object] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            dotted = f"{prefix}{key}"
            if key in out:
                raise DataError(f"'{key}' is given twice (line {lines[dotted]} and line {key_node.start_mark.line + 1})",
                                path=label, line=key_node.start_mark.line + 1, field=dotted)
            lines[dotted] = key_node.start_mark.line + 1
            if isinstance(value_node, yaml.MappingNode):
                out[key] = mapping(loader, value_node, f"{dotted}.")
            else:
                out[key] = loader.construct_object(value_node, deep=True)
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=Loader), lines  # noqa: S506 - a SafeLoader subclass


def load_config(path: Path | None, overrides: dict[str, object]) -> TeachConfig:
    """Read a YAML config (if any), apply flag overrides (dotted keys, e.g. `train.epochs`), validate."""
    data: dict[str, object] = {}
    lines: dict[str, int] = {}
    label = str(path) if path else "flags"
    if path is not None:
        import yaml

        try:
            loaded, lines = _read_yaml("\n".join(read_lines(path)), str(path))
        except OSError as error:
            raise ConfigError(f"cannot read the teach config {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            raise DataError(f"not valid YAML: {getattr(error, 'problem', error)}", path=str(path),
                            line=mark.line + 1 if mark else None) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise DataError("the teach config must be a mapping of field: value", path=str(path))
        data = loaded or {}
        for key in ("seed", "exam", "out"):  # relative paths are relative to the config file
            if isinstance(data.get(key), str) and not Path(str(data[key])).is_absolute():
                data[key] = str(path.parent / str(data[key]))
    for key, value in overrides.items():
        if value is None:
            continue
        target = data
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})  # type: ignore[assignment]
        target[leaf] = value
    try:
        return TeachConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        line = lines.get(field) if field not in overrides else None  # a flag's value has no line in the file
        raise DataError(first["msg"].removeprefix("Value error, "), path=label, line=line, field=field) from None
