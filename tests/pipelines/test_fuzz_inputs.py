"""Fuzzing every entry point a user reaches with bad input (issue 15, fuzz acceptance item).

Hypothesis generates wrong types, huge, non-finite, out-of-range and malformed values for each
argument of the pipeline call, `imagegen.generate`, `load_pipeline` and the generate and train
CLIs, plus model paths that are missing, files, or folders of junk. Each must be refused up front
with the documented exception: a ValueError (ConfigError, CorruptCheckpointError included) whose
message names the argument, or a FileNotFoundError naming the path; a CLI exits 2 with one
`error:` line and no traceback. None may take longer than the deadline, reach sampling (or
training), or allocate more than a few MB of Python memory first.
"""

from __future__ import annotations

import json
import math
import shutil
import string
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import imagegen
import imagegen.pipelines
from imagegen.diffusion import SAMPLERS
from imagegen.pipelines import loading as loading_module
from imagegen.utils.integrity import HASHES_KEY

REPO = Path(__file__).resolve().parents[2]
NUM_TIMESTEPS = 1000  # diffusion.num_timesteps of configs/tiny-test.yaml: the num_steps limit

FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # reproducible from the seed, no state kept between runs
    derandomize=True,
)
CLI_FUZZ = settings(
    FUZZ, suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture]
)
MAX_PYTHON_BYTES = 8 * 2**20  # more than this before refusing an argument is a large allocation
MAX_LOADING_BYTES = 64 * 2**20  # a junk model may be refused only after the tiny text encoder loaded


class Sampled(BaseException):
    """Raised where sampling (or training) would start: a bad request must be refused before it."""


def _refuse_sampling(*args, **kwargs):
    raise Sampled


def _refused(
    call,
    *names: str,
    errors: tuple[type[BaseException], ...] = (ValueError,),
    may_load: bool = False,
    max_bytes: int = MAX_PYTHON_BYTES,
) -> str | None:
    """Run `call`; it must raise one of `errors` whose message names one of `names`, before any
    sampling and within `max_bytes` of Python allocations (tracemalloc). Returns the message (None
    when `may_load` let the call succeed)."""
    tracemalloc.start()
    message = None
    try:
        call()
    except errors as error:
        message = str(error)
    except Sampled:
        pytest.fail(f"reached sampling instead of refusing (names {names})")
    else:
        if not may_load:
            pytest.fail(f"accepted (names {names})")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < max_bytes, f"{peak / 2**20:.0f} MB allocated before refusing: {message!s:.200}"
    assert message is None or any(name in message for name in names), (
        f"the message does not name {names}: {message:.300}"
    )
    return message


@pytest.fixture(scope="module")
def refusing_pipe(tiny_diffusion_checkpoint):
    """The tiny pipeline with sampling replaced by `Sampled`, also behind `imagegen.generate`."""
    pipe = imagegen.load_pipeline(tiny_diffusion_checkpoint, device="cpu")
    pipe._sample = _refuse_sampling
    key = (str(tiny_diffusion_checkpoint.resolve()), "cpu")
    loading_module._LOADED[key] = pipe
    yield pipe
    del loading_module._LOADED[key]


def test_a_valid_request_reaches_sampling(refusing_pipe, tiny_diffusion_checkpoint):
    """The control: the refusals below are not just every call failing."""
    with pytest.raises(Sampled):
        refusing_pipe("a red circle", num_steps=1, num_images_per_prompt=3, seed=1)
    with pytest.raises(Sampled):
        imagegen.generate("a red circle", model=tiny_diffusion_checkpoint, device="cpu", sampler="ddim")


# -- the pipeline call and generate() ----------------------------------------------------------

SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
NOT_STRINGS = st.one_of(
    st.integers(), st.floats(), st.none(), st.binary(), st.booleans(), st.dictionaries(st.text(), st.text())
)


BAD_TEXT = st.one_of(  # a lone surrogate (what an invalid byte in argv becomes), or huge
    st.tuples(st.text(max_size=20), SURROGATE, st.text(max_size=20)).map("".join),
    st.integers(10_001, 300_000).map(lambda n: "x" * n),
)


def _bad_prompts() -> st.SearchStrategy:
    """Prompts that must be refused: wrong types, lone surrogates, huge, too many."""
    bad_text = BAD_TEXT
    bad_item = st.one_of(bad_text, NOT_STRINGS)
    return st.one_of(
        NOT_STRINGS.filter(lambda v: not isinstance(v, (list, tuple))),
        bad_text,
        st.just([]),
        st.tuples(
            st.lists(st.text(max_size=10), max_size=3), bad_item, st.lists(st.text(max_size=5), max_size=3)
        ).map(lambda t: [*t[0], t[1], *t[2]]),
        st.integers(1025, 10**6).map(lambda n: ["a red circle"] * n),
    )


def _bad_counts(limit: int | None) -> st.SearchStrategy:
    """Not a positive integer (at most `limit`)."""
    too_many = [st.integers(min_value=limit + 1)] if limit else []
    return st.one_of(
        st.integers(max_value=0),
        *too_many,
        st.floats(),
        st.text(max_size=5),
        st.booleans(),
        st.just(2.0),
        st.just(10**400),
    )


BAD_GUIDANCE = st.one_of(
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.floats(max_value=-1e-12),
    st.floats(min_value=100.000001),
    st.integers(min_value=101),
    st.just(10**400),
    st.text(max_size=8),
    st.booleans(),
    st.complex_numbers(),
)
BAD_SEED = st.one_of(
    st.integers(max_value=-1), st.integers(min_value=2**63), st.floats(), st.text(max_size=5), st.booleans()
)
BAD_SAMPLER = st.one_of(
    st.text(min_size=1, max_size=12).filter(lambda s: s not in SAMPLERS),
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
)
BAD_ARGUMENTS = st.one_of(
    st.tuples(st.just("prompt"), _bad_prompts()),
    st.tuples(st.just("negative_prompt"), _bad_prompts().filter(lambda v: v is not None)),  # None: default
    st.tuples(st.just("guidance_scale"), BAD_GUIDANCE),
    st.tuples(st.just("num_images_per_prompt"), _bad_counts(imagegen.pipelines.base.MAX_IMAGES_PER_CALL)),
    st.tuples(st.just("num_steps"), _bad_counts(NUM_TIMESTEPS)),
    st.tuples(st.just("seed"), BAD_SEED),
    st.tuples(st.just("sampler"), BAD_SAMPLER),
)
VALID = {"prompt": "a red circle", "guidance_scale": 5.0, "num_steps": 1, "seed": 0}


@FUZZ
@given(bad=BAD_ARGUMENTS)
def test_a_bad_pipeline_argument_is_refused_naming_it(refusing_pipe, bad):
    """One bad argument among valid ones: a ValueError naming it, before any sampling."""
    name, value = bad
    _refused(lambda: refusing_pipe(**{**VALID, name: value}), name)


@FUZZ
@given(bad=BAD_ARGUMENTS, prompts=st.integers(1, 4))
def test_a_bad_generate_argument_is_refused_naming_it(refusing_pipe, tiny_diffusion_checkpoint, bad, prompts):
    """The same through `imagegen.generate`, with 1-4 valid prompts beside a bad other argument;
    a list of n prompts makes num_images_per_prompt > 1024 / n too many."""
    name, value = bad
    kwargs = {**VALID, "prompt": ["a red circle"] * prompts, name: value}
    _refused(lambda: imagegen.generate(model=tiny_diffusion_checkpoint, device="cpu", **kwargs), name)


@FUZZ
@given(count=st.integers(2, 1024), prompts=st.integers(2, 1024))
def test_too_many_images_in_all_are_refused_naming_the_count(refusing_pipe, count, prompts):
    """Each number valid alone, their product over MAX_IMAGES_PER_CALL."""
    if count * prompts <= 1024:
        prompts = 1024 // count + 1
    _refused(
        lambda: refusing_pipe(["a red circle"] * prompts, num_images_per_prompt=count),
        "num_images_per_prompt",
    )


BAD_DEVICES = st.one_of(
    st.sampled_from(
        ["mps", "meta", "cuda", "cuda:0", "cuda:7", "cuda:-1", "xla", "gpu", "", " cpu", "cpu:x"]
    ),
    st.text(max_size=10).filter(lambda s: not s.startswith("cpu")),
    st.integers(),
    st.floats(),
    st.lists(st.text(max_size=3), max_size=2),
)


@FUZZ
@given(device=BAD_DEVICES)
def test_a_bad_device_is_refused_naming_it(tiny_diffusion_checkpoint, device):
    """Unknown names, devices this machine lacks (cuda, mps), and non-strings."""
    _refused(lambda: imagegen.load_pipeline(tiny_diffusion_checkpoint, device=device), "device")


CONTROL = st.characters(categories=["Cc"])  # NUL, ESC, DEL, C1 controls: valid text


@FUZZ
@given(prompt=st.tuples(st.text(max_size=10), st.text(CONTROL, min_size=1, max_size=5)).map("".join))
def test_control_characters_in_a_prompt_are_valid_text(refusing_pipe, prompt):
    """Control characters are not refused (they are text), so such prompts reach sampling."""
    with pytest.raises(Sampled):
        refusing_pipe(prompt, num_steps=1)


def test_a_prompt_of_control_characters_samples(tiny_diffusion_checkpoint):
    """... and the text encoder and sampler take them: one real image."""
    pipe = imagegen.load_pipeline(tiny_diffusion_checkpoint, device="cpu")
    (image,) = pipe("a red\x00 circle\x1b[31m\x7f\x85", num_steps=1)
    assert image.size == (16, 16)


# -- model paths: missing, files, folders of junk -----------------------------------------------

JUNK_NAMES = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)
JUNK_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
JUNK_BYTES = st.one_of(st.binary(max_size=200), JUNK_JSON.map(lambda v: json.dumps(v).encode()))
NOT_MAPPINGS = JUNK_JSON.filter(lambda v: not isinstance(v, dict))
# a config.yaml that can never be a valid run config: not UTF-8, not a mapping, an unknown key,
# or a section that is not a mapping
JUNK_CONFIGS = st.one_of(
    st.binary(max_size=100).map(lambda b: b"\xff" + b),
    st.one_of(
        NOT_MAPPINGS,
        st.dictionaries(st.from_regex(r"\Anonsense_[a-z]{1,6}\Z"), JUNK_JSON, min_size=1, max_size=3),
        st.tuples(st.sampled_from(["train", "model", "text", "sample", "diffusion"]), NOT_MAPPINGS).map(
            lambda pair: {pair[0]: pair[1]}
        ),
    ).map(lambda v: yaml.safe_dump(v).encode()),
)
READ_FILES = ("config.yaml", "ema/model/config.json", "ema/model/diffusion_pytorch_model.safetensors")
KINDS = (
    "missing",
    "file",
    "empty folder",
    "folder of junk",
    "run of junk checkpoints",
    "junk checkpoint folder",
    "copy with one file junk",
    "copy without hashes, one file junk",
    "junk manifest",
    "copy without hashes, one architecture field junk",  # may load: a junk value may be harmless
    "GAN copy without hashes, one architecture field junk",
)
FIELD_JUNK = st.one_of(
    st.text(max_size=5),
    st.none(),
    st.floats(),
    st.integers(),
    st.lists(st.integers(-3, 40), max_size=12),
    JUNK_JSON,
)


@st.composite
def junk_models(draw) -> dict:
    """What a user might pass as a model path, as a recipe for `_build_model`."""
    return {
        "kind": draw(st.sampled_from(KINDS)),
        "files": draw(st.dictionaries(JUNK_NAMES, JUNK_BYTES, max_size=4)),  # a folder of junk
        "parts": draw(
            st.dictionaries(st.sampled_from(["trainer.json", *READ_FILES[1:]]), JUNK_BYTES, max_size=3)
        ),
        "target": draw(st.sampled_from(READ_FILES)),  # the file of a copy made junk
        "junk": draw(JUNK_BYTES),
        "config": draw(JUNK_CONFIGS),
        "field": draw(st.integers(0, 100)),  # which architecture field, modulo their number
        "value": draw(FIELD_JUNK),
    }


def _build_model(root: Path, checkpoints: dict[str, Path], recipe: dict) -> Path:
    """Lay out one junk model under `root`; returns the path to pass as `model`."""
    kind = recipe["kind"]
    checkpoint = checkpoints["gan" if kind.startswith("GAN") else "diffusion"]
    if kind == "missing":
        return root / "nowhere" / "run"
    if kind == "file":
        (root / "model.bin").write_bytes(recipe["junk"])
        return root / "model.bin"
    model = root / "model"
    model.mkdir()
    if kind == "folder of junk":
        for name, data in recipe["files"].items():
            (model / name).write_bytes(data)
    elif kind in ("run of junk checkpoints", "junk checkpoint folder"):
        parent = model / "checkpoints" if kind.startswith("run") else root
        folder = parent / "checkpoint-000003"
        files = {"trainer.json": json.dumps({"step": 3}).encode(), **recipe["parts"]}
        for name, data in {**files, "config.yaml": recipe["config"]}.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        model = model if kind.startswith("run") else folder
    elif "copy" in kind:
        copy = Path(shutil.copytree(checkpoint, model / "checkpoints" / checkpoint.name))
        if "without hashes" in kind:  # only the structural checks, then the loaders, see the junk
            state = json.loads((copy / "trainer.json").read_text())
            del state[HASHES_KEY]
            (copy / "trainer.json").write_text(json.dumps(state))
        if "field" in kind:
            path = copy / ("ema/G/network.json" if kind.startswith("GAN") else "ema/model/config.json")
            saved = json.loads(path.read_text())
            fields = saved["config"] if kind.startswith("GAN") else saved
            names = sorted(k for k in fields if not k.startswith("_"))
            fields[names[recipe["field"] % len(names)]] = recipe["value"]
            path.write_text(json.dumps(saved))
        else:
            target = recipe["target"]
            (copy / target).write_bytes(recipe["config"] if target == "config.yaml" else recipe["junk"])
    elif kind == "junk manifest":
        (model / "manifest.json").write_bytes(recipe["junk"])
    return model


@FUZZ
@given(junk=junk_models(), via=st.sampled_from(["load_pipeline", "generate"]))
def test_a_bad_model_path_is_refused_naming_the_path(
    tiny_diffusion_checkpoint, tiny_gan_checkpoint, junk, via
):
    """FileNotFoundError for what holds no checkpoint, a ValueError (CorruptCheckpointError,
    ConfigError) for unreadable or invalid files: each naming the path given or the bad file. A
    saved architecture with one junk field may also load, if the value happens to be harmless."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        checkpoints = {"diffusion": tiny_diffusion_checkpoint, "gan": tiny_gan_checkpoint}
        model = _build_model(root, checkpoints, junk)
        if via == "generate":
            call = lambda: imagegen.generate("a red circle", model=model, device="cpu", num_steps=1)  # noqa: E731
        else:
            call = lambda: imagegen.load_pipeline(model, device="cpu")  # noqa: E731
        may_load = "field" in junk["kind"]
        errors = (ValueError, FileNotFoundError)
        _refused(call, str(model), str(root), errors=errors, may_load=may_load, max_bytes=MAX_LOADING_BYTES)


# -- the CLIs ----------------------------------------------------------------------------------


def _parses(kind: type, text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _not_a(kind: type, low: float | None = None, high: float | None = None) -> st.SearchStrategy:
    """Command-line text argparse's `type=kind` refuses, or a number outside [low, high]."""
    texts = [st.text(max_size=8).filter(lambda s: not _parses(kind, s))]
    if low is not None:
        texts.append(st.integers(max_value=int(math.ceil(low)) - 1).map(str))
    if high is not None:
        texts.append(st.integers(min_value=int(high) + 1).map(str))
    return st.one_of(*texts)


CLI_OPTIONS = st.one_of(
    st.tuples(st.just("--num-images"), _not_a(int, 1, 1024), st.just("num_images_per_prompt")),
    st.tuples(st.just("--steps"), _not_a(int, 1, NUM_TIMESTEPS), st.just("num_steps")),
    st.tuples(st.just("--seed"), _not_a(int, 0, 2**63 - 1), st.just("seed")),
    st.tuples(
        st.just("--guidance-scale"),
        st.one_of(_not_a(float, 0, 100), st.sampled_from(["nan", "inf", "-inf", "-1e-9", "1e308"])),
        st.just("guidance_scale"),
    ),
    st.tuples(
        st.just("--sampler"), st.text(max_size=8).filter(lambda s: s not in SAMPLERS), st.just("sampler")
    ),
    st.tuples(st.just("--device"), BAD_DEVICES.filter(lambda d: isinstance(d, str)), st.just("device")),
)


def _cli_errors(capsys, main, argv: list[str]) -> str:
    """Run a CLI; it must exit 2 with one `error:` line and no traceback. Returns that line."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse-level errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, f"exit {code} for {argv!r:.300}: {err[-500:]}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def cli_pipe(refusing_pipe, tiny_diffusion_checkpoint):
    """The generate CLI loads the refusing pipeline for the tiny checkpoint (other paths and
    devices load for real)."""
    real = imagegen.pipelines.load_pipeline

    def load(path=None, device=None):
        if path is not None and Path(path) == tiny_diffusion_checkpoint and device is None:
            return refusing_pipe
        return real(path, device=device)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imagegen.pipelines, "load_pipeline", load)
        yield refusing_pipe


@CLI_FUZZ
@given(option=CLI_OPTIONS)
def test_a_bad_generate_cli_option_is_one_error_line_naming_it(cli_pipe, capsys, option):
    """Text argparse refuses (names the flag) or a value the library refuses (names the argument)."""
    from imagegen.cli.generate import main

    flag, value, argument = option
    argv = ["a red circle", "--model", str(cli_pipe.checkpoint), "--out", "unused.png", f"{flag}={value}"]
    line = _cli_errors(capsys, main, argv)
    assert flag in line or argument in line, line


@CLI_FUZZ
@given(prompt=BAD_TEXT)
@example(prompt="-\ud800")  # CI found it: argparse's own error message could not be printed
@example(prompt="-x")  # argparse reads it as an unknown flag; the message says how to pass it
def test_a_bad_generate_cli_prompt_is_one_error_line(cli_pipe, capsys, prompt):
    """Lone surrogates (an invalid byte in argv), huge prompts, prompts that look like flags."""
    from imagegen.cli.generate import main

    line = _cli_errors(capsys, main, [prompt, "--model", str(cli_pipe.checkpoint), "--out", "unused.png"])
    assert "prompt" in line, line


def _range_keys() -> list[tuple[str, float, float]]:
    from imagegen.config.checks import _RANGES

    sections = ("train", "data", "text", "diffusion", "sample", "model")
    return [(f"{s}.{k}", low, high) for s in sections for k, (low, high) in _RANGES[s].items()]


@st.composite
def bad_overrides(draw) -> tuple[str, str]:
    """(override text, what the error must name): malformed, unknown keys, out-of-range values."""
    kind = draw(st.sampled_from(["malformed", "unknown key", "out of range"]))
    if kind == "malformed":
        text = draw(st.text(max_size=12).filter(lambda s: "=" not in s))
        return text, repr(text)  # the message quotes it
    if kind == "unknown key":
        section = draw(st.sampled_from(["train", "data", "model", "nonsense"]))
        key = draw(st.from_regex(r"\A[a-z][a-z_]{0,10}\Z").filter(lambda k: k not in ("preset",)))
        from imagegen.config import RunConfig, config_to_dict

        known = config_to_dict(RunConfig())
        if key in known.get(section, {}):
            key += "_x"
        named = f"{section}.{key}" if section in known else section  # an unknown section is named
        return f"{section}.{key}={draw(st.integers())}", named
    key, low, high = draw(st.sampled_from(_range_keys()))
    values = [
        st.floats(max_value=low, exclude_max=True, allow_nan=False).map(repr),
        st.sampled_from(
            [".nan", "nan", "[1, 2]", "{a: 1}", "true", "abc", "1" + "0" * 400, "-1" + "0" * 400]
        ),
    ]
    if math.isfinite(high):
        values.append(st.floats(min_value=high, exclude_min=True).map(repr))
    value = draw(st.one_of(*values))
    if value == "true" or (value.startswith("1" + "0" * 10) and not math.isfinite(high)):
        value = "-1" + "0" * 400  # true/1e400 may be in range for an unbounded key: use -1e400
    return f"{key}={value}", key


@CLI_FUZZ
@given(override=bad_overrides())
def test_a_bad_train_override_is_one_error_line_naming_the_key(capsys, override):
    """Refused at config load: training (replaced by `Sampled`) never starts."""
    from imagegen.cli import train as train_cli

    text, named = override
    argv = ["--config", str(REPO / "configs" / "tiny-test.yaml"), "--set", text]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_cli, "_train", _refuse_sampling)
        line = _cli_errors(capsys, train_cli.main, argv)
    assert named in line, line


@CLI_FUZZ
@given(content=JUNK_BYTES, kind=st.sampled_from(["missing", "folder", "junk", "unknown key"]))
def test_a_bad_train_config_file_is_one_error_line_naming_it(capsys, content, kind):
    """A missing file, a folder, non-UTF-8 bytes, an unknown key: named, and nothing trains."""
    from imagegen.cli import train as train_cli

    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.yaml"
        if kind == "folder":
            config.mkdir()
        elif kind == "junk":
            config.write_bytes(b"\xff" + content)  # not UTF-8
        elif kind == "unknown key":
            config.write_text(f"nonsense_{len(content)}: 1\n")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(train_cli, "_train", _refuse_sampling)
            line = _cli_errors(capsys, train_cli.main, ["--config", str(config)])
    assert str(config) in line or "nonsense_" in line, line
