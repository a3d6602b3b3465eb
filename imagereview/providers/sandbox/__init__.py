"""The built-in sandbox provider: a local server that speaks the Kie.ai Jobs API."""

from .callbacks import sign_callback
from .config import SandboxConfig
from .server import SandboxServer

__all__ = ["SandboxConfig", "SandboxServer", "sign_callback"]
