"""course_lib: the tested companion library of the multimodal and diffusion textbook.

Modules are imported explicitly (``from course_lib import runtime``); importing the
package itself stays cheap and never needs torchvision, a GPU or a network.
"""

__version__ = "0.1.0"
