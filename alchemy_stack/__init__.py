"""The Alchemy platform stack and its settings."""

from alchemy_stack.settings import Settings, SettingsError
from alchemy_stack.stack import AlchemyStack

__all__ = ["AlchemyStack", "Settings", "SettingsError"]
