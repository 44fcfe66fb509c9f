"""Our :class:`UNet2D` as a diffusers ``UNet2DModel``: the same network, named differently.

``UNet2D`` is built block for block like diffusers' ``UNet2DModel`` with "DownBlock2D" /
"AttnDownBlock2D" levels (both follow the DDPM U-Net of Ho et al. 2020), so one maps onto
the other weight for weight. Two functions make that checkable, without importing
diffusers here:

* :func:`diffusers_config` gives the ``UNet2DModel(**config)`` arguments of the same network;
* :func:`load_diffusers_state_dict` copies a ``UNet2DModel``'s weights into a ``UNet2D``.

The tests use them to show that both compute the same function, and the throughput
benchmark to compare the two implementations of one architecture at one parameter count.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from course_lib.nn.blocks import Downsample, Upsample
from course_lib.nn.unet import UNet2D

_RESNET = {"norm1": "norm1", "conv1": "conv1", "emb_proj": "time_emb_proj", "norm2": "norm2", "conv2": "conv2",
           "shortcut": "conv_shortcut"}
_ATTENTION = {"norm": "group_norm", "attention.to_q": "to_q", "attention.to_k": "to_k", "attention.to_v": "to_v",
              "attention.to_out": "to_out.0"}


def diffusers_config(unet: UNet2D, sample_size: int | None = None) -> dict[str, Any]:
    """Keyword arguments of the diffusers ``UNet2DModel`` with exactly ``unet``'s architecture."""
    if not isinstance(unet, UNet2D):
        raise TypeError(f"unet must be a UNet2D, got {type(unet).__name__}")
    if not unet.skip_connections:
        raise ValueError("UNet2DModel always has skip connections: unet must be built with skip_connections=True")
    if unet.context_dim is not None:
        raise ValueError("UNet2DModel has no cross-attention: unet must be built without context_dim")
    widths = [unet.base_channels * m for m in unet.channel_mults]
    # diffusers fixes the channels per head, we fix the number of heads: equal where every attention has one width
    head_dims = {w // unet.heads for w, a in zip(widths, unet.attention_levels) if a} | {widths[-1] // unet.heads}
    if len(head_dims) != 1:
        raise ValueError(f"diffusers needs one attention head size, this unet has {sorted(head_dims)}")
    down = ["AttnDownBlock2D" if a else "DownBlock2D" for a in unet.attention_levels]
    return dict(
        sample_size=sample_size,
        in_channels=unet.in_channels,
        out_channels=unet.out_channels,
        layers_per_block=unet.layers_per_level,
        block_out_channels=tuple(widths),
        down_block_types=tuple(down),
        up_block_types=tuple(t.replace("Down", "Up") for t in reversed(down)),
        norm_num_groups=unet.groups,
        norm_eps=1e-5,
        attention_head_dim=head_dims.pop(),
        dropout=unet.dropout,
        num_class_embeds=None if unet.num_classes is None else unet.num_classes + 1,
        flip_sin_to_cos=True,
        freq_shift=0,
    )


def diffusers_names(unet: UNet2D) -> dict[str, str]:
    """Map each of ``unet``'s parameter names to the name of the same weight in ``UNet2DModel``."""
    names = {"conv_in": "conv_in", "time_embedding.1": "time_embedding.linear_1",
             "time_embedding.3": "time_embedding.linear_2", "mid_block1": "mid_block.resnets.0",
             "mid_attention": "mid_block.attentions.0", "mid_block2": "mid_block.resnets.1",
             "norm_out": "conv_norm_out", "conv_out": "conv_out", "class_embedding": "class_embedding"}
    for path, stages in (("down_blocks", unet.down), ("up_blocks", unet.up)):
        level, j = 0, 0
        for i, stage in enumerate(stages):
            if isinstance(stage, (Downsample, Upsample)):
                kind = "downsamplers" if isinstance(stage, Downsample) else "upsamplers"
                names[f"{'down' if path == 'down_blocks' else 'up'}.{i}"] = f"{path}.{level}.{kind}.0"
                level, j = level + 1, 0
                continue
            ours = f"{'down' if path == 'down_blocks' else 'up'}.{i}"
            names[f"{ours}.block"] = f"{path}.{level}.resnets.{j}"
            names[f"{ours}.attention"] = f"{path}.{level}.attentions.{j}"
            j += 1
    result = {}
    for name in unet.state_dict():
        module, leaf = name.rsplit(".", 1)
        prefix = max((p for p in names if module == p or module.startswith(p + ".")), key=len)
        rest = module[len(prefix) + 1:]
        table = _RESNET if "resnets" in names[prefix] else _ATTENTION if "attentions" in names[prefix] else {}
        rest = table.get(rest, rest)
        result[name] = ".".join(part for part in (names[prefix], rest, leaf) if part)
    return result


@torch.no_grad()
def load_diffusers_state_dict(unet: UNet2D, state_dict: Mapping[str, torch.Tensor]) -> UNet2D:
    """Copy the weights of a diffusers ``UNet2DModel`` (built by :func:`diffusers_config`) into ``unet``."""
    names = diffusers_names(unet)
    missing = sorted(set(names.values()) - set(state_dict))
    if missing:
        raise ValueError(f"state_dict lacks {len(missing)} weights of this architecture, e.g. {missing[:3]}")
    ours = unet.state_dict()
    for name, theirs in names.items():
        value = state_dict[theirs]
        if name == "time_embedding.1.weight":
            # diffusers orders the embedding [cos, sin] (flip_sin_to_cos), we order it [sin, cos]
            half = value.shape[1] // 2
            value = torch.cat([value[:, half:], value[:, :half]], dim=1)
        if value.shape != ours[name].shape:
            raise ValueError(f"{theirs} has shape {tuple(value.shape)}, expected {tuple(ours[name].shape)}")
        ours[name].copy_(value)
    return unet
