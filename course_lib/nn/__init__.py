"""Networks of the course: shared layers, the U-Net, encoders for images and text."""

from course_lib.nn.layers import Attention, SinusoidalTimeEmbedding

__all__ = ["Attention", "SinusoidalTimeEmbedding"]
