import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generators.copy_paste import CopyPasteGenerator
from generators.pbe import PbeGenerator
from generators.registry import FAMILIES, build_generator, validate_spec
from generators.types import GenerationSettings, GeneratorError, MethodSpec

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_family_keys_are_stable():
    assert list(FAMILIES) == ["copy_paste", "pbe", "dtc", "dreampaint"]


def test_unknown_family_lists_the_families():
    with pytest.raises(GeneratorError, match="unknown method family 'sdxl'; known families: copy_paste, pbe, dtc, dreampaint"):
        validate_spec(MethodSpec(family="sdxl"))


def test_validate_fills_defaults(tiny_pbe_checkpoint):
    spec = validate_spec(MethodSpec(family="pbe", checkpoint=str(tiny_pbe_checkpoint)))
    assert spec.params == {"encoder": "clip_cls"}
    assert validate_spec(MethodSpec(family="copy_paste")).params == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (MethodSpec("pbe"), "'pbe' needs a checkpoint folder"),
        (MethodSpec("pbe", checkpoint="/nonexistent/pbe"), "/nonexistent/pbe does not exist"),
        (MethodSpec("pbe", params={"encoder": "clip"}), "allowed values: clip_cls, clip_all, dinov2"),
        (MethodSpec("pbe", params={"fusion": "film"}), "unknown parameter.*'fusion'.*allowed parameters: encoder"),
        (MethodSpec("copy_paste", checkpoint="/some/path"), "'copy_paste' takes no checkpoint"),
    ],
)
def test_bad_specs_name_the_field(spec, message):
    with pytest.raises(GeneratorError, match=message):
        validate_spec(spec)


def test_validation_reads_no_weights(tiny_pbe_checkpoint, tmp_path):
    """A checkpoint whose weight files are garbage passes validation (only the layout is
    checked) and fails, clearly, when the weights are loaded."""
    hollow = tmp_path / "hollow"
    shutil.copytree(tiny_pbe_checkpoint, hollow)
    for weights in hollow.glob("*/*.safetensors"):
        weights.write_bytes(b"")
    spec = MethodSpec("pbe", checkpoint=str(hollow))
    assert validate_spec(spec).checkpoint == str(hollow)
    with pytest.raises(GeneratorError, match="cannot load"):
        build_generator(spec)


def test_validation_imports_no_torch():
    code = (
        "import sys\n"
        "from generators.registry import validate_spec\n"
        "from generators.types import MethodSpec\n"
        "validate_spec(MethodSpec('copy_paste'))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'diffusers' not in sys.modules, 'diffusers imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=120)


def test_build_generator(tiny_pbe_checkpoint, tiny_pbe_generator, make_request):
    assert isinstance(build_generator(MethodSpec("copy_paste")), CopyPasteGenerator)

    generator = build_generator(MethodSpec("pbe", params={"encoder": "clip_cls"}, checkpoint=str(tiny_pbe_checkpoint)))
    assert isinstance(generator, PbeGenerator)
    assert generator.describe()["params"] == {"encoder": "clip_cls"}
    settings = GenerationSettings(num_inference_steps=2, resolution=64)
    request = make_request(3)
    (built,) = generator.generate([request], settings)
    (fixture,) = tiny_pbe_generator.generate([request], settings)
    assert np.array_equal(np.asarray(built), np.asarray(fixture))


def test_every_available_family_builds(tiny_checkpoints):
    checkpoints = {"pbe": str(tiny_checkpoints["pbe"]), "dtc": str(tiny_checkpoints["dtc_film"]),
                   "dreampaint": str(tiny_checkpoints["sd_inpainting"])}
    for key, family in FAMILIES.items():
        if family.available:
            generator = build_generator(MethodSpec(key, checkpoint=checkpoints.get(key)))
            assert generator.family == key
            assert generator.describe()["family"] == key
