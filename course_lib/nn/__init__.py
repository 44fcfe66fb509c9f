"""Networks of the course: shared layers, the U-Net, encoders for images and text."""

from course_lib.nn.blocks import Downsample, ResidualBlock, SpatialAttention, Upsample
from course_lib.nn.fusion import CrossAttentionBlock, CrossAttentionFusion, EarlyFusion, LateFusion
from course_lib.nn.layers import Attention, SinusoidalTimeEmbedding
from course_lib.nn.toy import ToyDenoiser
from course_lib.nn.unet import UNet2D

__all__ = [
    "Attention",
    "SinusoidalTimeEmbedding",
    "ResidualBlock",
    "SpatialAttention",
    "Downsample",
    "Upsample",
    "UNet2D",
    "ToyDenoiser",
    "CrossAttentionBlock",
    "EarlyFusion",
    "LateFusion",
    "CrossAttentionFusion",
]
