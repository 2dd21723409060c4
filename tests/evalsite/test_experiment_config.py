import pytest

from evalsite.experiment_config import ExperimentConfigError, parse_experiment_config

GOOD = """
name = "shoes-v1"
dataset = "shoes"
seeds = [0, 1]
num_inference_steps = 40
guidance_scale = 5
resolution = 512
batch_size = 8

[[methods]]
key = "copy_paste"
family = "copy_paste"

[[methods]]
key = "pbe"
family = "pbe"
checkpoint = "pbe-official"
params = { encoder = "clip_cls" }
"""


def test_a_complete_file_parses_with_canonical_names():
    config = parse_experiment_config(GOOD)
    assert config.name == "shoes-v1" and config.seeds == (0, 1)
    assert config.num_inference_steps == 40 and config.guidance_scale == 5.0
    assert [m.key for m in config.methods] == ["copy_paste", "pbe"]
    assert config.methods[1].params == {"encoder": "clip_cls"}


def test_defaults_follow_the_papers():
    config = parse_experiment_config('name="x"\ndataset="d"\n[[methods]]\nkey="c"\nfamily="copy_paste"\n')
    assert (config.num_inference_steps, config.guidance_scale, config.resolution) == (50, 5.0, 512)


def test_the_hash_ignores_name_but_not_sampling_settings():
    a = parse_experiment_config(GOOD)
    b = parse_experiment_config(GOOD.replace('"shoes-v1"', '"renamed"'))
    c = parse_experiment_config(GOOD.replace("num_inference_steps = 40", "num_inference_steps = 50"))
    d = parse_experiment_config(GOOD.replace("batch_size = 8", "batch_size = 8\nbatch_invariant = false"))
    assert a.content_hash("h") == b.content_hash("h") != c.content_hash("h")
    assert a.batch_invariant and not d.batch_invariant and d.content_hash("h") != a.content_hash("h")
    assert a.content_hash("h") != a.content_hash("other-dataset-version")


@pytest.mark.parametrize(
    "change, expected",
    [
        (("seeds = [0, 1]", "seeds = []"), "seeds = []: expected a non-empty list"),
        (("seeds = [0, 1]", "seeds = [1, 1]"), "a seed is listed twice"),
        (("resolution = 512", "resolution = 500"), "resolution = 500: expected a multiple of 8"),
        (("batch_size = 8", "batch_size = 0"), "batch_size = 0: expected a whole number from 1 to 256"),
        (("guidance_scale = 5", 'guidance_scale = "high"'), "guidance_scale = 'high': expected a number"),
        (('family = "pbe"', 'family = "pbe2"'), "method 'pbe': family = 'pbe2': expected one of copy_paste, pbe, dtc, dreampaint"),
        (('key = "pbe"', 'key = "copy_paste"'), "key is used by two methods"),
        (('encoder = "clip_cls"', 'encoder = "resnet"'), "method 'pbe':"),
        (('batch_size = 8', 'batch_size = 8\nsteps = 3'), "unknown key(s) steps"),
        (('name = "shoes-v1"', ''), "name = None: expected a non-empty string"),
        (("batch_size = 8", 'batch_size = 8\nbatch_invariant = "yes"'), "batch_invariant = 'yes': expected true or false"),
    ],
)
def test_bad_fields_are_named(change, expected):
    with pytest.raises(ExperimentConfigError) as caught:
        parse_experiment_config(GOOD.replace(*change), source="exp.toml")
    assert str(caught.value).startswith("exp.toml: ")
    assert expected in str(caught.value)


def test_invalid_toml_says_where():
    with pytest.raises(ExperimentConfigError, match="not valid TOML"):
        parse_experiment_config("name = ", source="broken.toml")


FAMILY_DEFAULTS = """
name = "tables"
dataset = "shoes"

[[methods]]
key = "copy_paste"
family = "copy_paste"

[[methods]]
key = "pbe"
family = "pbe"
checkpoint = "pbe"

[[methods]]
key = "dtc"
family = "dtc"
checkpoint = "dtc"
params = { fusion = "cross_attention" }

[[methods]]
key = "dtc_fast"
family = "dtc"
checkpoint = "dtc"
num_inference_steps = 20
guidance_scale = 3
"""


def test_each_family_samples_as_its_paper_unless_told_otherwise():
    methods = {m.key: m for m in parse_experiment_config(FAMILY_DEFAULTS).methods}
    assert (methods["copy_paste"].num_inference_steps, methods["copy_paste"].guidance_scale) == (None, None)
    assert (methods["pbe"].num_inference_steps, methods["pbe"].guidance_scale) == (50, 5.0)
    assert (methods["dtc"].num_inference_steps, methods["dtc"].guidance_scale) == (40, 5.0)  # DDIM, 40 steps
    assert methods["dtc"].params == {"fusion": "cross_attention"}
    assert (methods["dtc_fast"].num_inference_steps, methods["dtc_fast"].guidance_scale) == (20, 3.0)
    # The file's own setting applies to every method that sets none.
    told = {m.key: m for m in parse_experiment_config(FAMILY_DEFAULTS.replace('dataset = "shoes"', 'dataset = "shoes"\nnum_inference_steps = 8\nguidance_scale = 2')).methods}
    assert (told["pbe"].num_inference_steps, told["dtc"].num_inference_steps, told["dtc_fast"].num_inference_steps) == (8, 8, 20)
    assert (told["pbe"].guidance_scale, told["dtc"].guidance_scale, told["dtc_fast"].guidance_scale) == (2.0, 2.0, 3.0)


@pytest.mark.parametrize(
    "change, expected",
    [
        (("num_inference_steps = 20", "num_inference_steps = 0"), "method 'dtc_fast': num_inference_steps = 0: expected a whole number from 1 to 1000"),
        (("guidance_scale = 3", "guidance_scale = -1"), "method 'dtc_fast': guidance_scale = -1: expected a number >= 0"),
        (('family = "copy_paste"', 'family = "copy_paste"\nnum_inference_steps = 4'), "method 'copy_paste': family 'copy_paste' runs no sampler; num_inference_steps does not apply"),
        (('fusion = "cross_attention"', 'fusion = "concat"'), "method 'dtc': method family 'dtc': fusion = 'concat' is not allowed; allowed values: film, cross_attention, addition"),
    ],
)
def test_bad_method_sampling_fields_are_named(change, expected):
    with pytest.raises(ExperimentConfigError) as caught:
        parse_experiment_config(FAMILY_DEFAULTS.replace(*change), source="exp.toml")
    assert expected in str(caught.value)
