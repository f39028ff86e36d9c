"""The Alchemy platform stack and its settings.

Imported before ``aws_cdk``, it gives the jsii kernel its compile cache (:mod:`alchemy_stack.kernel_compile_cache`).
"""

from alchemy_stack.kernel_compile_cache import use_compile_cache

use_compile_cache()

from alchemy_stack.settings import Settings, SettingsError  # noqa: E402 - after the cache: settings import aws_cdk
from alchemy_stack.stack import AlchemyStack  # noqa: E402

__all__ = ["AlchemyStack", "Settings", "SettingsError"]
