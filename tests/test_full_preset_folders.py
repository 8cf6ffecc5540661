"""The full preset loads each encoder from a folder laid out as its hub repository ships it
(config, safetensors weights, tokenizer files), written here with small widths through
``save_pretrained``; no hub cache, no snapshot_download. A missing file is named at launch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from django.urls import reverse
from transformers import (
    BertTokenizer,
    BlipForImageTextRetrieval,
    CLIPModel,
    CLIPTokenizer,
    GroundingDinoForObjectDetection,
    Idefics2Config,
    Idefics2ForConditionalGeneration,
    SamModel,
    XCLIPModel,
)

from scoring.anime_reward.config import missing_source_files
from scoring.anime_reward.presets import _tiny_configs, build_encoders
from tests.conftest import make_user

MERGES = ["t h", "th e</w>", "a n", "c h", "a r", "ch ar"]


def _clip_tokenizer(folder):
    from scoring.anime_reward.anisora.reward import bytes_to_unicode

    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m.split()) for m in MERGES]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    configs = _tiny_configs()
    torch.manual_seed(0)
    folders = {name: root / name for name in configs}
    for folder in folders.values():
        folder.mkdir()
    # text towers sized to the BPE vocabulary the tokenizer files define
    vocab_size = 512 + len(MERGES) + 2
    for name in ("clip", "xclip"):
        text = configs[name].text_config
        text.vocab_size, text.bos_token_id, text.eos_token_id = vocab_size, vocab_size - 2, 2
        text.pad_token_id = vocab_size - 1
    CLIPModel(configs["clip"]).save_pretrained(folders["clip"])
    _clip_tokenizer(folders["clip"])
    XCLIPModel(configs["xclip"]).save_pretrained(folders["xclip"])
    _clip_tokenizer(folders["xclip"])
    GroundingDinoForObjectDetection(configs["grounding_dino"]).save_pretrained(
        folders["grounding_dino"]
    )
    vocab = [f"[unused{i}]" for i in range(1200)]
    vocab[0], vocab[100], vocab[101], vocab[102], vocab[1012] = (
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        ".",
    )
    vocab[1100] = "character"
    (folders["grounding_dino"] / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folders["grounding_dino"] / "vocab.txt")).save_pretrained(
        folders["grounding_dino"]
    )
    SamModel(configs["sam"]).save_pretrained(folders["sam"])
    BlipForImageTextRetrieval(configs["blip"]).save_pretrained(folders["blip"])
    # Mantis-8B-Idefics2 ships the whole model in shards with an index: only its tower is read
    whole = Idefics2Config(
        vision_config=configs["idefics2"].to_dict(),
        perceiver_config=dict(resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                              resampler_head_dim=8, num_key_value_heads=1),
        text_config=dict(model_type="mistral", vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1),
    )  # fmt: skip
    Idefics2ForConditionalGeneration(whole).save_pretrained(
        folders["idefics2"], max_shard_size="100KB"
    )
    return {name: str(folder) for name, folder in folders.items()}


def test_the_full_encoders_load_from_hub_layout_folders(sources):
    from safetensors import safe_open

    assert missing_source_files(sources) == [], "the folders save_pretrained wrote are complete"
    # the Idefics2 folder is sharded with an index, as Mantis-8B-Idefics2 ships
    index = json.loads((Path(sources["idefics2"]) / "model.safetensors.index.json").read_text())[
        "weight_map"
    ]
    assert len(set(index.values())) > 1
    encoders = build_encoders("full", sources=sources)
    assert encoders.sources == sources
    # the weights are the saved ones, not a fresh initialisation
    name = next(k for k in index if k.endswith("vision_model.post_layernorm.weight"))
    with safe_open(f"{sources['idefics2']}/{index[name]}", framework="pt") as f:
        saved = f.get_tensor(name)
    assert torch.equal(encoders.idefics2.post_layernorm.weight, saved)
    with safe_open(f"{sources['clip']}/model.safetensors", framework="pt") as f:
        saved = f.get_tensor("text_projection.weight")
    assert torch.equal(encoders.clip.text_projection.weight, saved)
    # tokenizers come from the folders' own files
    ids = encoders.clip_tokenizer(["the character"])["input_ids"][0].tolist()
    assert ids[0] == 512 + len(MERGES) and ids[-1] == 512 + len(MERGES) + 1
    tokens = encoders.grounding_dino_tokenizer(["character."])["input_ids"][0].tolist()
    assert tokens == [101, 1100, 1012, 102]


def test_a_missing_file_or_a_hub_id_is_named(sources, tmp_path):
    import shutil

    broken = {**sources, "clip": str(tmp_path / "clip")}
    shutil.copytree(sources["clip"], broken["clip"])
    (tmp_path / "clip" / "merges.txt").unlink()
    problems = missing_source_files(broken)
    assert problems == [f"LABELHUB_REWARD_SOURCE_CLIP={tmp_path / 'clip'}: merges.txt missing"]
    with pytest.raises(ValueError, match="merges.txt missing"):
        build_encoders("full", sources=broken)

    idefics2 = tmp_path / "idefics2"
    shutil.copytree(sources["idefics2"], idefics2)
    first = sorted(idefics2.glob("model-*.safetensors"))[0]
    first.unlink()
    problems = missing_source_files({**sources, "idefics2": str(idefics2)})
    assert problems == [f"LABELHUB_REWARD_SOURCE_IDEFICS2={idefics2}: {first.name} missing"]

    hub = missing_source_files({**sources, "sam": "facebook/sam-vit-base"})
    assert (
        len(hub) == 1
        and "LABELHUB_REWARD_SOURCE_SAM=facebook/sam-vit-base: not a local folder" in hub[0]
    )

    pickled = tmp_path / "blip"
    shutil.copytree(sources["blip"], pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    problems = missing_source_files({**sources, "blip": str(pickled)})
    assert problems == [
        f"LABELHUB_REWARD_SOURCE_BLIP={pickled}: model.safetensors missing "
        "(pytorch_model.bin is a pickle; convert it to safetensors)"
    ]


@pytest.mark.django_db
def test_launching_full_with_a_missing_file_is_refused(client, settings, sources, tmp_path):
    from annotation.services.exports import create_snapshot
    from runs.models import Run
    from tests.lead_data import make_round

    snapshot = create_snapshot(round_ids=[make_round("full-r").pk], test_fraction=0.25, seed=0)
    settings.LABELHUB_REWARD_PRESET = "full"
    settings.LABELHUB_REWARD_SOURCES = {**sources, "xclip": str(tmp_path / "gone")}
    client.force_login(make_user("adam", "admin"))
    response = client.post(
        reverse("scoring:api_train"),
        {"snapshot_id": snapshot.pk},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert (
        f"LABELHUB_REWARD_SOURCE_XCLIP={tmp_path / 'gone'}: not a local folder"
        in (response.json()["detail"])
    )
    assert not Run.objects.exists()
