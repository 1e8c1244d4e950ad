"""Model code: toggleable hybrid conv/attention backbones registered with timm.

Importing this package registers every model with timm, so
``timm.create_model("localvit_tiny", dwconv=False)`` works after ``import modules``.
"""

import modules.casvit  # noqa: F401
import modules.efficientmod  # noqa: F401
import modules.localvit  # noqa: F401
import modules.scalablevit  # noqa: F401
from modules.toggles import ToggleError

__all__ = ["ToggleError"]
