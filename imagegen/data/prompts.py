"""The Shapes grammar: vocabulary, scene content, captions, specs and prompt-suite files.

Owns everything about a Shapes scene except where its objects sit and how it is drawn (that is
`imagegen.data.shapes`): the fixed colour/shape/size/relation vocabulary, sampling what a scene
contains, turning it into a caption, the machine-checkable `spec` a scorer reads, and the JSONL
prompt suites used for evaluation. The grammar is frozen: training, the scorer and benchmarks all
depend on it. Schema and grammar are documented in docs/shapes.md. No torch import here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Saturated, hue-separated colours: any two of the 8 colours and 3 backgrounds are >= 110 apart in
# RGB (Euclidean, uint8), over 15x the noise a scorer must tolerate (sigma 0.05 in [-1, 1] = 6.4).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (210, 20, 40),
    "orange": (255, 128, 0),
    "yellow": (250, 240, 20),
    "green": (20, 170, 40),
    "cyan": (0, 215, 235),
    "blue": (30, 70, 230),
    "purple": (135, 30, 210),
    "pink": (255, 100, 190),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "white": (255, 255, 255),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
SIZES: tuple[str, ...] = ("small", "large")
RELATIONS: tuple[str, ...] = ("above", "below", "left of", "right of")
SCENE_KINDS: tuple[str, ...] = ("single", "counting", "relation", "list")
SUITES: tuple[str, ...] = ("single", "counting", "relation", "list", "color_binding", "heldout")
# The `heldout` suite's pairs when nothing is excluded: four colours and four shapes, all different,
# so every suite kind (relation, list, colour binding) can be built from them.
DEFAULT_HELDOUT: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("blue", "triangle"),
    ("green", "cross"),
    ("yellow", "diamond"),
)

COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
PLURALS: dict[str, str] = {shape: shape + ("es" if shape.endswith("s") else "s") for shape in SHAPES}
RELATION_PHRASES: dict[str, str] = {
    "above": "above",
    "below": "below",
    "left of": "to the left of",
    "right of": "to the right of",
}
# Paraphrase templates shared by every kind; `{be}` agrees with the first noun ("is" / "are").
TEMPLATES: tuple[str, ...] = (
    "{scene}",
    "there {be} {scene}",
    "a picture of {scene}",
    "an image of {scene}",
    "a drawing of {scene}",
)
BACKGROUND_NAMING_PROB = 0.5  # share of captions ending in "on a <background> background"
SIZE_NAMING_PROB = 0.3  # chance, per object, that its size is named ("a small red circle")

Pair = tuple[str, str]  # (color, shape)


# --------------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneOptions:
    """Validated sampling options: which kinds, how often, and which (color, shape) pairs."""

    kinds: tuple[str, ...]
    cumulative: tuple[float, ...]  # running sum of the normalized weights (last entry 1)
    allowed: tuple[Pair, ...]  # pairs that may appear, in COLORS x SHAPES order


def check_exclude(exclude: Iterable[Sequence[str]]) -> frozenset[Pair]:
    """Validate (color, shape) pairs; raise ValueError naming `exclude` and the allowed names."""
    pairs = set()
    for item in exclude:
        if isinstance(item, str) or len(item) != 2:
            raise ValueError(f"exclude: each item must be a (color, shape) pair, got {item!r}")
        color, shape = item
        if color not in COLORS:
            raise ValueError(f"exclude: unknown color {color!r}; allowed colors: {list(COLORS)}")
        if shape not in SHAPES:
            raise ValueError(f"exclude: unknown shape {shape!r}; allowed shapes: {list(SHAPES)}")
        pairs.add((color, shape))
    return frozenset(pairs)


def _check_kind_feasible(kind: str, allowed: Sequence[Pair], argument: str) -> None:
    needs_two = kind in ("relation", "list", "color_binding")
    if not allowed or (needs_two and len(allowed) < 2):
        raise ValueError(f"{argument}: {kind!r} scenes need more (color, shape) pairs than exclude leaves")
    if kind == "color_binding" and not any(a[0] != b[0] and a[1] != b[1] for a in allowed for b in allowed):
        raise ValueError(f"{argument}: 'color_binding' needs two pairs differing in color and shape")


def scene_options(
    scene_kinds: Sequence[str] = SCENE_KINDS,
    scene_weights: Sequence[float] | None = None,
    exclude: Iterable[Sequence[str]] = (),
) -> SceneOptions:
    """Check sampling arguments once; `scene_weights=None` means uniform over `scene_kinds`."""
    kinds = tuple(scene_kinds)
    if not kinds:
        raise ValueError(f"scene_kinds: must name at least one of {list(SCENE_KINDS)}")
    for kind in kinds:
        if kind not in SCENE_KINDS:
            raise ValueError(f"scene_kinds: unknown kind {kind!r}; allowed: {list(SCENE_KINDS)}")
    weights = np.ones(len(kinds)) if scene_weights is None else np.asarray(scene_weights, dtype=float)
    if weights.shape != (len(kinds),):
        raise ValueError(f"scene_weights: need {len(kinds)} weights (one per scene kind), got {weights.size}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"scene_weights: must be finite, non-negative, with a positive sum; got {weights}")
    excluded = check_exclude(exclude)
    allowed = tuple((c, s) for c in COLORS for s in SHAPES if (c, s) not in excluded)
    if not allowed:
        raise ValueError("exclude: every (color, shape) pair is excluded; leave at least one")
    for kind, weight in zip(kinds, weights):
        if weight > 0:
            _check_kind_feasible(kind, allowed, "exclude")
    cumulative = np.cumsum(weights / weights.sum())
    cumulative[-1] = 1.0  # searchsorted on a uniform draw in [0, 1) never runs off the end
    return SceneOptions(kinds, tuple(float(c) for c in cumulative), allowed)


# --------------------------------------------------------------------------------------------
# Scene content (what is in the scene, not where)
# --------------------------------------------------------------------------------------------


def _pick_pairs(rng: np.random.Generator, allowed: Sequence[Pair], count: int) -> list[Pair]:
    """`count` distinct pairs, uniformly (the first `count` of a random permutation)."""
    return [allowed[i] for i in np.argsort(rng.random(len(allowed)))[:count]]


def _pick_binding_pairs(rng: np.random.Generator, allowed: Sequence[Pair]) -> list[Pair]:
    """Two pairs with different colours and different shapes (rejection; feasibility checked)."""
    while True:
        first, second = _pick_pairs(rng, allowed, 2)
        if first[0] != second[0] and first[1] != second[1]:
            return [first, second]


def _object(rng: np.random.Generator, pair: Pair, count: int = 1) -> dict[str, Any]:
    color, shape = pair
    return {"shape": shape, "color": color, "size": SIZES[rng.integers(len(SIZES))], "count": count}


def sample_content(rng: np.random.Generator, kind: str, allowed: Sequence[Pair]) -> dict[str, Any]:
    """Draw a scene's background, objects and relation (a spec without `instances`).

    `kind` is a scene kind or "color_binding" (two objects differing in colour and shape, stored
    with kind "list"). Relation `{"type": t, "a": 0, "b": 1}` reads "objects[0] is t objects[1]".
    """
    _check_kind_feasible(kind, allowed, "exclude")
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    relation = None
    if kind in ("single", "counting"):
        count = 1 if kind == "single" else int(rng.integers(2, 5))
        objects = [_object(rng, _pick_pairs(rng, allowed, 1)[0], count)]
    elif kind == "color_binding":
        objects = [_object(rng, pair) for pair in _pick_binding_pairs(rng, allowed)]
    else:
        many = 2 if kind == "relation" else min(int(rng.integers(2, 4)), len(allowed))
        objects = [_object(rng, pair) for pair in _pick_pairs(rng, allowed, many)]
        if kind == "relation":
            relation = {"type": RELATIONS[rng.integers(len(RELATIONS))], "a": 0, "b": 1}
    stored_kind = "list" if kind == "color_binding" else kind
    return {"kind": stored_kind, "background": background, "objects": objects, "relation": relation}


# --------------------------------------------------------------------------------------------
# Captions and prompt specs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phrasing:
    """How a scene is worded: which template, and which optional attributes are named."""

    template: str
    name_background: bool
    name_sizes: tuple[bool, ...]  # one per object


def sample_phrasing(rng: np.random.Generator, content: dict[str, Any]) -> Phrasing:
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    name_background = bool(rng.random() < BACKGROUND_NAMING_PROB)
    name_sizes = tuple(bool(x) for x in rng.random(len(content["objects"])) < SIZE_NAMING_PROB)
    return Phrasing(template, name_background, name_sizes)


def article(word: str) -> str:
    """'an' before a vowel sound in this vocabulary ("an orange", "an image"), else 'a'."""
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(obj: dict[str, Any], name_size: bool) -> str:
    """'a red circle', 'an orange cross', 'three small blue squares'."""
    words = ([obj["size"]] if name_size else []) + [obj["color"]]
    if obj["count"] == 1:
        return " ".join([article(words[0]), *words, obj["shape"]])
    return " ".join([COUNT_WORDS[obj["count"]], *words, PLURALS[obj["shape"]]])


def _join_list(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption_for(content: dict[str, Any], phrasing: Phrasing) -> str:
    """The caption of a scene under a phrasing (grammar in docs/shapes.md)."""
    phrases = [noun_phrase(obj, named) for obj, named in zip(content["objects"], phrasing.name_sizes)]
    relation = content["relation"]
    if relation is not None:
        scene = f"{phrases[relation['a']]} {RELATION_PHRASES[relation['type']]} {phrases[relation['b']]}"
    else:
        scene = _join_list(phrases)
    if phrasing.name_background:
        scene += f" on {article(content['background'])} {content['background']} background"
    be = "are" if content["objects"][0]["count"] > 1 else "is"
    return phrasing.template.format(scene=scene, be=be)


def prompt_spec(content: dict[str, Any], phrasing: Phrasing) -> dict[str, Any]:
    """The spec a prompt constrains: unnamed size/background become null, `instances` is null."""
    objects = [
        {**obj, "size": obj["size"] if named else None}
        for obj, named in zip(content["objects"], phrasing.name_sizes)
    ]
    background = content["background"] if phrasing.name_background else None
    relation = dict(content["relation"]) if content["relation"] else None
    return {
        "kind": content["kind"],
        "background": background,
        "objects": objects,
        "relation": relation,
        "instances": None,
    }


def check_spec(spec: Any) -> None:
    """Raise ValueError if `spec` does not follow the schema in docs/shapes.md."""
    if not isinstance(spec, dict) or spec.get("kind") not in SCENE_KINDS:
        raise ValueError(f"spec must be a dict whose 'kind' is one of {list(SCENE_KINDS)}")
    if spec.get("background") not in (None, *BACKGROUNDS):
        raise ValueError(f"spec background {spec.get('background')!r} is not null or {list(BACKGROUNDS)}")
    objects = spec.get("objects")
    if not isinstance(objects, list) or not objects:
        raise ValueError("spec 'objects' must be a non-empty list")
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("color") not in COLORS or obj.get("shape") not in SHAPES:
            raise ValueError(f"spec object {obj!r} needs a known 'color' and 'shape'")
        if obj.get("size") not in (None, *SIZES) or not isinstance(obj.get("count"), int):
            raise ValueError(f"spec object {obj!r} needs 'size' in {list(SIZES)} or null and an int 'count'")
    instances = spec.get("instances")
    if instances is not None and not (
        isinstance(instances, list)
        and all(isinstance(inst, dict) and len(inst.get("box", ())) == 4 for inst in instances)
    ):
        raise ValueError("spec 'instances' must be null or a list of dicts with a 4-number 'box'")
    relation = spec.get("relation")
    if relation is not None and (
        not isinstance(relation, dict)
        or relation.get("type") not in RELATIONS
        or not {relation.get("a"), relation.get("b")} <= set(range(len(objects)))
    ):
        raise ValueError(f"spec relation {relation!r} needs 'type' in {list(RELATIONS)} and object indices")


# --------------------------------------------------------------------------------------------
# Prompt suites (JSONL files)
# --------------------------------------------------------------------------------------------


def _heldout_kinds(pairs: Sequence[Pair]) -> list[str]:
    kinds = ["single", "counting", "relation", "list", "color_binding"]
    feasible = []
    for kind in kinds:
        try:
            _check_kind_feasible(kind, pairs, "exclude")
        except ValueError:
            continue
        feasible.append(kind)
    return feasible


def _suite_records(
    rng: np.random.Generator, kinds: list[str], allowed: Sequence[Pair], count: int
) -> list[dict[str, Any]]:
    """`count` prompts cycling through `kinds`; repeats only once unique prompts run out."""
    records, seen = [], set()
    for attempt in range(count * 50):
        if len(records) == count:
            break
        content = sample_content(rng, kinds[len(records) % len(kinds)], allowed)
        phrasing = sample_phrasing(rng, content)
        prompt = caption_for(content, phrasing)
        if prompt in seen and attempt < count * 40:
            continue
        seen.add(prompt)
        records.append({"prompt": prompt, "spec": prompt_spec(content, phrasing)})
    return records


def write_prompt_suites(
    out_dir: str | Path,
    seed: int = 0,
    per_suite: int = 100,
    exclude: Iterable[Sequence[str]] = (),
) -> dict[str, Path]:
    """Write `<suite>.jsonl` for every suite in SUITES; return {suite: path}.

    Each line is `{"prompt": str, "spec": dict}` (prompt specs: unnamed attributes are null).
    All suites but `heldout` avoid the excluded pairs; `heldout` uses only them, or
    DEFAULT_HELDOUT when `exclude` is empty. Deterministic in (seed, per_suite, exclude).
    """
    if per_suite < 1:
        raise ValueError(f"per_suite: must be >= 1, got {per_suite}")
    excluded = check_exclude(exclude)
    options = scene_options(exclude=excluded)
    heldout = sorted(excluded) or list(DEFAULT_HELDOUT)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for number, suite in enumerate(SUITES):
        rng = np.random.default_rng([seed, number])
        if suite == "heldout":
            records = _suite_records(rng, _heldout_kinds(heldout), heldout, per_suite)
        else:
            records = _suite_records(rng, [suite], options.allowed, per_suite)
        paths[suite] = out_dir / f"{suite}.jsonl"
        paths[suite].write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return paths


def load_prompt_file(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL prompt file: one `{"prompt": str, "spec": dict | null}` per non-blank line.

    `spec` may be absent (read as None). A malformed line raises ValueError naming path and line.
    """
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise ValueError('expected an object with a string "prompt"')
            record.setdefault("spec", None)
            if record["spec"] is not None:
                check_spec(record["spec"])
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{path}:{number}: malformed prompt line: {error}") from None
        records.append(record)
    return records
