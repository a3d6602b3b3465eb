"""Where the client finds the server and its token: flags, then the environment, then the
config file that `imagereview login` writes."""

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

URL_VARIABLE = "IMAGEREVIEW_URL"
TOKEN_VARIABLE = "IMAGEREVIEW_TOKEN"


class ConfigError(Exception):
    """The URL or token is missing, or the config file cannot be read."""


@dataclass(frozen=True)
class Connection:
    url: str
    token: str


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "imagereview" / "config.toml"


def site_url(url: str) -> str:
    """The site's root, whether the user gave it or the API's own address."""
    url = url.strip().rstrip("/")
    for suffix in ("/api/v1", "/api"):
        url = url.removesuffix(suffix)
    return url


def resolve(*, url: str | None = None, token: str | None = None) -> Connection:
    """The connection to use: each value from a flag, else the environment, else the file."""
    stored = _read_file()
    url = url or os.environ.get(URL_VARIABLE) or stored.get("url")
    token = token or os.environ.get(TOKEN_VARIABLE) or stored.get("token")
    if not url:
        raise ConfigError(
            f"No server URL: pass --url, set {URL_VARIABLE}, or run `imagereview login`."
        )
    if not token:
        raise ConfigError(
            f"No API token: pass --token, set {TOKEN_VARIABLE}, or run `imagereview login`. "
            f"Create a token at {site_url(url)}/account/tokens/."
        )
    return Connection(url=site_url(url), token=token.strip())


def save(connection: Connection) -> Path:
    """Write the config file readable by its owner only, since it holds a secret."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A TOML basic string accepts JSON's string escapes.
    text = f"url = {json.dumps(connection.url)}\ntoken = {json.dumps(connection.token)}\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    # O_CREAT's mode applies only to a new file; an older one may have been wider.
    path.chmod(0o600)
    return path


def _read_file() -> dict[str, str]:
    path = config_path()
    try:
        with path.open("rb") as file:
            stored = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"Cannot read {path}: {error}") from error
    return {key: value for key, value in stored.items() if isinstance(value, str)}
