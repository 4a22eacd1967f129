"""The key store and ``python -m rag keys``: keys are shown once and stored only as HMAC digests
in private files; names, roles, collections and expiry are checked; revoking keeps auth on."""

from __future__ import annotations

import json
import os
import time

import pytest

from rag.errors import ConfigError
from rag.keys import KeyStore, parse_expiry, redact_keys


def test_keys_are_stored_as_digests_in_private_files(tmp_path):
    store = KeyStore(tmp_path / "d")
    assert not store.exists() and not (tmp_path / "d").exists()  # nothing is made before the first key
    info, key = store.create("alice", "reader", ["hr", "handbook", "hr"])
    assert info.collections == ["handbook", "hr"] and key.startswith("rtk_" + info.id + "_")
    for name in ("keys.db", "server.secret"):
        assert (os.stat(tmp_path / "d" / name).st_mode & 0o777) == 0o600
    raw = b"".join(p.read_bytes() for p in (tmp_path / "d").iterdir())
    assert key.encode() not in raw and key.split("_", 2)[2].encode() not in raw
    who, why = store.verify(key)
    assert why == "ok" and who.name == "alice" and who.role == "reader" and who.granted() == ["handbook", "hr"]
    assert store.verify(key + "x") == (None, "invalid") and store.verify(None) == (None, "missing")
    other = KeyStore(tmp_path / "d")  # another process (the CLI) revokes; this one sees it at once
    assert other.revoke("alice") and not other.revoke("alice")
    assert store.verify(key) == (None, "revoked") and store.exists()  # revoked: auth stays on
    _, again = store.create("alice", "writer", ["hr"])  # a revoked name may be reused
    assert store.verify(again)[1] == "ok" and store.verify(key)[1] == "invalid"


def test_bad_input_is_refused_naming_the_field(tmp_path):
    store = KeyStore(tmp_path / "d")
    store.create("alice", "reader", ["hr"])
    for args, field in [(("alice", "reader", ["hr"]), "name: a key named 'alice' exists"),
                        (("bob", "owner", ["hr"]), "role: 'owner' is not a role"),
                        (("bob", "reader", []), "collection: give at least one"),
                        (("bob", "reader", ["h r"]), "collection[0]: 'h r' is not a collection name"),
                        (("b b", "reader", ["hr"]), "name: 'b b' is not a key name")]:
        with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
            store.create(*args)
    assert store.create("ops", "admin", [])[0].collections == ["*"]
    now = time.time()
    assert parse_expiry("30d", now) == now + 30 * 86400 and parse_expiry("90m", now) == now + 5400
    for bad in ("tomorrow", "0d", "2001-01-01"):
        with pytest.raises(ConfigError, match="expires"):
            parse_expiry(bad, now)


def test_a_server_secret_others_can_read_is_refused(tmp_path):
    store = KeyStore(tmp_path / "d")
    _, key = store.create("alice", "reader", ["hr"])
    os.chmod(tmp_path / "d" / "server.secret", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        KeyStore(tmp_path / "d").verify(key)


def test_keys_cli_prints_the_key_once(capsys):
    from rag.__main__ import main

    assert main(["keys", "create", "--name", "alice", "--role", "reader", "--collection", "hr",
                 "--expires", "2w"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("rtk_") and "shown only now" in out.err and key not in out.err
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "reader" in listing and "active" in listing and key.split("_", 2)[2] not in listing
    assert main(["keys", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["keys"]
    assert row["name"] == "alice" and "key" not in row and row["expires"]
    assert main(["keys", "revoke", "alice"]) == 0 and main(["keys", "revoke", "alice"]) == 1
    assert "no active key named 'alice'" in capsys.readouterr().err
    assert main(["keys", "create", "--name", "bob", "--role", "reader"]) == 2  # no collection: usage error


def test_key_shaped_text_is_redacted():
    key = "rtk_0123456789_" + "A" * 43
    assert redact_keys(f"collections: '{key}' is not granted") == "collections: 'rtk_***' is not granted"
