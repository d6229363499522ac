"""Configuration: a Sprocket ``sprocket.toml`` loaded unchanged, plus extensions.

:mod:`~tesengine.config.models` holds the shape (strict pydantic models, and
redaction of secrets); :mod:`~tesengine.config.loading` finds the file and
merges it with the environment and arguments, blaming bad keys on their source.
"""

from __future__ import annotations

from .loading import CONFIG_ENV, DEFAULT_FILES, find_config_file, load_config
from .models import (
    AuthConfig,
    AzureAuth,
    AzureStorage,
    BackendConfig,
    BasicAuthConfig,
    BearerAuthConfig,
    Config,
    GoogleAuth,
    GoogleStorage,
    S3Auth,
    S3Storage,
    StorageConfig,
    is_loopback,
    url_has_secret,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_FILES",
    "AuthConfig",
    "AzureAuth",
    "AzureStorage",
    "BackendConfig",
    "BasicAuthConfig",
    "BearerAuthConfig",
    "Config",
    "GoogleAuth",
    "GoogleStorage",
    "S3Auth",
    "S3Storage",
    "StorageConfig",
    "find_config_file",
    "is_loopback",
    "load_config",
    "url_has_secret",
]
