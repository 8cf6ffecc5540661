"""``manage.py convert_sat_generator``: a checkpoint with SAT's key names (as Index-AniSora's
5B_RL ships: ``<iteration>/mp_rank_00_model_states.pt`` + ``latest``) becomes a folder the
production ``load_generator`` loads, whose transformer computes what the SAT weights compute."""

import pytest
import torch
from django.core.management import CommandError, call_command

from training.alignment.cogvideox import load_generator
from training.alignment.replica import write_release_replica
from training.alignment.trainer import predict_v, rotary_embedding


def sat_state_from(transformer, *, extra_positions: int) -> dict:
    """The SAT names of a diffusers transformer's weights, written out from SAT's module tree
    (dit_video_concat.py), independently of the converter's tables."""
    d = {k: v.clone() for k, v in transformer.state_dict().items()}
    sat, P = {}, "model.diffusion_model."
    blocks = transformer.config.num_layers
    for i in range(blocks):
        b, L = f"transformer_blocks.{i}.", f"{P}transformer.layers.{i}."
        for kind in ("weight", "bias"):
            sat[f"{L}attention.query_key_value.{kind}"] = torch.cat(
                [d[f"{b}attn1.to_{x}.{kind}"] for x in "qkv"]
            )
            sat[f"{L}attention.dense.{kind}"] = d[f"{b}attn1.to_out.0.{kind}"]
            sat[f"{L}input_layernorm.{kind}"] = d[f"{b}norm1.norm.{kind}"]
            sat[f"{L}post_attention_layernorm.{kind}"] = d[f"{b}norm2.norm.{kind}"]
            sat[f"{L}mlp.dense_h_to_4h.{kind}"] = d[f"{b}ff.net.0.proj.{kind}"]
            sat[f"{L}mlp.dense_4h_to_h.{kind}"] = d[f"{b}ff.net.2.{kind}"]
            n1 = d[f"{b}norm1.linear.{kind}"].chunk(6)  # shift scale gate, text shift scale gate
            n2 = d[f"{b}norm2.linear.{kind}"].chunk(6)
            sat[f"{P}mixins.adaln_layer.adaLN_modulations.{i}.1.{kind}"] = torch.cat(
                n1[:3] + n2[:3] + n1[3:] + n2[3:]
            )
            sat[f"{P}mixins.adaln_layer.query_layernorm_list.{i}.{kind}"] = d[
                f"{b}attn1.norm_q.{kind}"
            ]
            sat[f"{P}mixins.adaln_layer.key_layernorm_list.{i}.{kind}"] = d[
                f"{b}attn1.norm_k.{kind}"
            ]
    for kind in ("weight", "bias"):
        sat[f"{P}mixins.patch_embed.proj.{kind}"] = d[f"patch_embed.proj.{kind}"]
        sat[f"{P}mixins.patch_embed.text_proj.{kind}"] = d[f"patch_embed.text_proj.{kind}"]
        sat[f"{P}time_embed.0.{kind}"] = d[f"time_embedding.linear_1.{kind}"]
        sat[f"{P}time_embed.2.{kind}"] = d[f"time_embedding.linear_2.{kind}"]
        sat[f"{P}transformer.final_layernorm.{kind}"] = d[f"norm_final.{kind}"]
        sat[f"{P}mixins.final_layer.norm_final.{kind}"] = d[f"norm_out.norm.{kind}"]
        sat[f"{P}mixins.final_layer.linear.{kind}"] = d[f"proj_out.{kind}"]
        sat[f"{P}mixins.final_layer.adaLN_modulation.1.{kind}"] = d[f"norm_out.linear.{kind}"]
    # SAT's learnable position table is larger (the RL model's 90x136 grid); only its prefix is used
    pos = d["patch_embed.pos_embedding"]
    extra = torch.randn(1, extra_positions, pos.shape[2])
    sat[f"{P}mixins.pos_embed.pos_embedding"] = torch.cat([pos, extra], dim=1)
    sat[f"{P}mixins.pos_embed.freqs_sin"] = torch.randn(10, 4)  # buffers SAT saves; dropped
    sat[f"{P}mixins.pos_embed.freqs_cos"] = torch.randn(10, 4)
    sat["first_stage_model.encoder.conv_in.weight"] = torch.randn(2)  # not the transformer
    return sat


@pytest.mark.slow
def test_a_sat_checkpoint_converts_to_a_folder_the_preset_loads(tmp_path):
    base = write_release_replica(tmp_path / "released")
    tuned = write_release_replica(tmp_path / "tuned-diffusers", seed=7)  # "the RL weights"
    reference = load_generator("cogvideox-5b-i2v", path=str(tuned))
    sat = tmp_path / "5B_RL"
    (sat / "1000").mkdir(parents=True)
    (sat / "latest").write_text("1000\n")
    torch.save(
        {"module": sat_state_from(reference.transformer, extra_positions=37)},
        sat / "1000" / "mp_rank_00_model_states.pt",
    )
    call_command("convert_sat_generator", str(sat), base=str(base), out=str(tmp_path / "out"))

    converted = load_generator("cogvideox-5b-i2v", path=str(tmp_path / "out"))
    g = torch.Generator().manual_seed(0)
    shape = converted.shape
    latent = (1, (shape.frames - 1) // 4 + 1, 4, shape.height // 8, shape.width // 8)
    inputs = {
        "noisy": torch.randn(latent, generator=g),
        "image_latents": torch.randn(latent, generator=g),
        "prompt_embeds": torch.randn(1, 226, 32, generator=g),
        "timesteps": torch.tensor([400]),
        "rotary": rotary_embedding(converted, latent[1], "cpu"),
    }
    with torch.no_grad():
        assert torch.allclose(
            predict_v(converted.transformer, **inputs),
            predict_v(reference.transformer, **inputs),
            atol=1e-5,
        )
        base_out = predict_v(
            load_generator("cogvideox-5b-i2v", path=str(base)).transformer, **inputs
        )
    assert not torch.allclose(base_out, predict_v(converted.transformer, **inputs), atol=1e-3)

    with pytest.raises(CommandError, match="exists; choose a new folder"):
        call_command("convert_sat_generator", str(sat), base=str(base), out=str(tmp_path / "out"))


def test_a_checkpoint_that_needs_unpickling_is_refused(tmp_path):
    import argparse

    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {}, "args": argparse.Namespace(lr=1)}, path)  # an arbitrary object
    with pytest.raises(CommandError, match="never unpickles"):
        call_command(
            "convert_sat_generator", str(path), base=str(tmp_path), out=str(tmp_path / "o")
        )
