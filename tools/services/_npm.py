"""The pinned npm packages of the JavaScript servers, installed once into the machine cache."""

from __future__ import annotations

from pathlib import Path

from _base import Paths, npm_install

#: azurite 3.35.0 is the newest that runs on Node 20; cosmosdb-server is pinned for its API.
NPM_PACKAGES = ("azurite@3.35.0", "@vercel/cosmosdb-server@1.0.1")


def node_modules(paths: Paths) -> Path:
    """Install the pinned packages if needed and return their node_modules folder."""
    return npm_install(paths.cache / "npm", *NPM_PACKAGES)
