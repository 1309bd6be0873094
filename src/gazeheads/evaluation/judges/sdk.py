"""The vendors' Python clients are optional extras: import them late, and say which extra to install."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from .base import JudgeError

# The package each LLM judge needs, the pip extra that installs it, and the range it was tested with.
SDKS: dict[str, tuple[str, str, int]] = {
    "anthropic": ("anthropic", ">=2.0,<3", 2),
    "openai": ("openai", ">=3.0,<4", 3),
}


def import_sdk(provider: str) -> ModuleType:
    """The vendor's client package, or a JudgeError naming the extra that installs it."""
    package, tested, major = SDKS[provider]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise JudgeError(f"The {provider} judge needs the `{package}` Python package, which is not installed.",
                         f'pip install "gazeheads[{provider}]"  (or: pip install "{package}{tested}")') from None
    version = str(getattr(module, "__version__", ""))
    if version.split(".")[0].isdigit() and int(version.split(".")[0]) != major:
        warnings.warn(f"{package} {version} is outside the range the {provider} judge was tested with "
                      f"({tested}); install gazeheads[{provider}] if judging fails.", stacklevel=2)
    return module
