"""``hf:<Hub id or folder>``: a Hugging Face ViT by name, from the API and the CLI, tested offline with a
local checkpoint folder (the Hub path is the same call with a Hub id)."""
import pytest
import torch

pytest.importorskip("transformers")

from _cli_helpers import run  # noqa: E402
from l2ul.errors import L2ULError  # noqa: E402
from l2ul.models import create_model  # noqa: E402
from l2ul.models.io import load_model, save_model  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16,
            patch_size=8, num_channels=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import transformers

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vit")
    transformers.ViTForImageClassification(transformers.ViTConfig(**TINY, num_labels=10)).save_pretrained(folder)
    return folder


def test_hf_family_loads_the_checkpoint_and_reloads_offline(checkpoint, tmp_path):
    model = create_model(f"hf:{checkpoint}", num_classes=10, pretrained=True).eval()
    assert model.l2ul_meta["arch"] == "hf_vit"                       # the file records the resolved config
    x = torch.rand(3, 1, 8, 8)
    save_model(model, tmp_path / "vit.safetensors")
    again = load_model(tmp_path / "vit.safetensors").eval()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    random_init = create_model(f"hf:{checkpoint}", num_classes=10).eval()   # its config, random weights
    with torch.no_grad():
        assert not torch.equal(random_init(x), model(x))
    with pytest.raises(L2ULError, match="config"):
        create_model(f"hf:{tmp_path / 'nowhere'}", num_classes=10)


def test_convert_takes_a_hugging_face_vit_by_name(capsys, checkpoint, tmp_path):
    out = tmp_path / "vit.safetensors"
    rc, _, err = run(capsys, "convert", "--arch", f"hf:{checkpoint}", "--pretrained", "--num-classes", "10",
                     "--dataset", "digits", "--out", out)
    assert rc == 0, err
    assert load_model(out).l2ul_meta["class_names"] == [str(i) for i in range(10)]
