"""Channel adapters: one module per platform, one interface (`base.Channel`)."""
from services.notifier.channels.base import (
    Button,
    ButtonStyle,
    CallbackRefused,
    CallbackRequest,
    CallbackResult,
    Card,
    CardState,
    Channel,
    ChannelError,
    Click,
    Field,
    HttpAnswer,
    LinkPolicy,
    MessageRef,
    Target,
)

__all__ = [
    "Button", "ButtonStyle", "CallbackRefused", "CallbackRequest", "CallbackResult", "Card", "CardState",
    "Channel", "ChannelError", "Click", "Field", "HttpAnswer", "LinkPolicy", "MessageRef", "Target",
]
