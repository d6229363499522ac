"""A SAS token on the inputs URL rides on every derived URL, against Azurite (no account key)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tesengine.config import AzureStorage, StorageConfig
from tesengine.digest import Digester
from tesengine.engine.outputs import OutputCache, RemoteDirectory
from tesengine.errors import StorageError
from tesengine.storage import Stager, Storage, parse_url
from tests.fixtures.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from tests.test_storage_names import NAMES, _tree


def account_sas(permissions: str = "rwdlac") -> str:
    """An account SAS (version 2019-12-12) for the emulator's account, signed with its key."""
    fields = {"sv": "2019-12-12", "ss": "b", "srt": "sco", "sp": permissions}
    fields |= {"se": "2099-01-01T00:00:00Z", "spr": "https,http"}
    # account, permissions, services, resource types, start, expiry, IP, protocol, version
    order = [fields["sp"], fields["ss"], fields["srt"], "", fields["se"], "", fields["spr"]]
    to_sign = "\n".join([ACCOUNT, *order, fields["sv"], ""])
    key = base64.b64decode(ACCOUNT_KEY)
    sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in {**fields, "sig": sig}.items())


async def test_sas_on_inputs_reaches_every_object_and_back(
    azurite: Azurite, tmp_path: Path
) -> None:
    sas = account_sas()
    base = f"https://{ACCOUNT}.blob.core.windows.net/{azurite.container}/{uuid.uuid4().hex[:12]}"
    config = StorageConfig(azure=AzureStorage(endpoint=azurite.endpoint))  # no key: the SAS only
    async with Storage(config) as storage, Digester(threads=1, cache=False) as digester:
        staged = await Stager(storage, digester, f"{base}?{sas}").stage(_tree(tmp_path / "src"))
        assert parse_url(staged.url).query == sas
        listed = [info.url async for info in storage.list(staged.url)]
        assert len(listed) == len(NAMES)
        assert {parse_url(url).query for url in listed} == {sas}
        directory = RemoteDirectory(staged.url, OutputCache(storage, tmp_path / "cache"))
        assert {rel: await f.read_bytes() async for rel, f in directory.walk()} == NAMES
    # The emulator checks the signature: a SAS signed with another key is refused.
    forged = account_sas().rpartition("sig=")[0] + "sig=" + quote(base64.b64encode(b"x" * 32))
    async with Storage(config) as storage:
        with pytest.raises(StorageError) as info:
            await storage.read_bytes(dataclasses.replace(parse_url(listed[0]), query=forged).url)
    assert "sig=<redacted>" in str(info.value)
