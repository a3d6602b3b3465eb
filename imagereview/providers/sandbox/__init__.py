"""The built-in sandbox provider: a local server that speaks the Kie.ai Jobs API."""

from .server import SandboxConfig, SandboxServer, sign_callback

__all__ = ["SandboxConfig", "SandboxServer", "sign_callback"]
