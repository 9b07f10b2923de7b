"""Secrets at rest: per-participant credentials encrypted with Fernet (the `cryptography` package).

The key never touches the database. It comes from FITPIPE_SECRET_KEY, or from the file named by
FITPIPE_SECRET_KEY_FILE. Either may hold several keys separated by commas or new lines: the
first encrypts, all of them decrypt, so a key can be rotated without downtime:

1. put the new key first and keep the old one after it;
2. run `fitpipe secrets rotate` (re-encrypts every secret with the first key);
3. drop the old key.

Only commands that read or write secrets ask for the key, so a missing key never stops ingest
of sources without credentials.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import psycopg

from fitpipe.errors import FitpipeError

ENV_SECRET_KEY = "FITPIPE_SECRET_KEY"
ENV_SECRET_KEY_FILE = "FITPIPE_SECRET_KEY_FILE"


class SecretKeyMissing(FitpipeError):
    exit_code = 2


def new_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:12]


@dataclass(frozen=True)
class Keyring:
    keys: tuple[bytes, ...]

    @classmethod
    def from_environment(cls) -> Keyring:
        text = os.environ.get(ENV_SECRET_KEY, "")
        path = os.environ.get(ENV_SECRET_KEY_FILE)
        if not text and path:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise SecretKeyMissing(
                    f"cannot read the key file named by {ENV_SECRET_KEY_FILE}: {exc.strerror}"
                ) from None
        keys = tuple(k.strip().encode() for k in text.replace("\n", ",").split(",") if k.strip())
        if not keys:
            raise SecretKeyMissing(
                f"this needs the secret key: set {ENV_SECRET_KEY} or {ENV_SECRET_KEY_FILE} "
                "(make one with `fitpipe secrets new-key`)"
            )
        try:
            cls._fernet(keys)
        except ValueError:
            raise SecretKeyMissing(
                f"{ENV_SECRET_KEY} is not a valid key list (each key is 32 url-safe "
                "base64-encoded bytes, as `fitpipe secrets new-key` prints)"
            ) from None
        return cls(keys)

    @staticmethod
    def _fernet(keys: tuple[bytes, ...]):
        from cryptography.fernet import Fernet, MultiFernet

        return MultiFernet([Fernet(k) for k in keys])

    @property
    def primary_id(self) -> str:
        return key_id(self.keys[0])

    def encrypt(self, secret: str) -> bytes:
        return self._fernet(self.keys).encrypt(secret.encode())

    def decrypt(self, token: bytes) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet(self.keys).decrypt(bytes(token)).decode()
        except InvalidToken:
            raise SecretKeyMissing(
                "a stored secret cannot be decrypted with the configured keys (was the key replaced without rotating?)"
            ) from None

    def rotate(self, token: bytes) -> bytes:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet(self.keys).rotate(bytes(token))
        except InvalidToken:
            raise SecretKeyMissing(
                f"a stored secret cannot be decrypted with the configured keys; to rotate, set {ENV_SECRET_KEY} "
                "to the new key, a comma, then the old one (nothing was changed)"
            ) from None


def store_secret(conn: psycopg.Connection, keyring: Keyring, user_id: int, source: str, secret: str) -> None:
    """Encrypt and store a participant's secret for a source; marks their credentials as ok."""
    with conn.transaction():
        found = conn.execute(
            "SELECT 1 FROM participant_sources WHERE user_id = %s AND source = %s", (user_id, source)
        ).fetchone()
        if not found:
            raise FitpipeError(f"participant {user_id} is not enrolled with source {source!r}")
        conn.execute(
            "INSERT INTO source_credentials (user_id, source, ciphertext, key_id) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (user_id, source) DO UPDATE SET ciphertext = excluded.ciphertext, key_id = excluded.key_id, "
            "updated_at = now()",
            (user_id, source, keyring.encrypt(secret), keyring.primary_id),
        )
        set_credential_state(conn, user_id, source, "ok", "secret stored")


def load_secret(conn: psycopg.Connection, keyring: Keyring, user_id: int, source: str) -> str | None:
    row = conn.execute(
        "SELECT ciphertext FROM source_credentials WHERE user_id = %s AND source = %s", (user_id, source)
    ).fetchone()
    return keyring.decrypt(row[0]) if row else None


def set_credential_state(conn: psycopg.Connection, user_id: int, source: str, state: str, note: str) -> None:
    conn.execute(
        "UPDATE participant_sources SET credential_state = %s, credential_note = %s, updated_at = now() "
        "WHERE user_id = %s AND source = %s",
        (state, note, user_id, source),
    )


def rotate_secrets(conn: psycopg.Connection, keyring: Keyring) -> tuple[int, int]:
    """Re-encrypt every secret not yet under the primary key. Returns (re-encrypted, already current)."""
    rotated = current = 0
    with conn.transaction():
        rows = conn.execute("SELECT user_id, source, ciphertext, key_id FROM source_credentials FOR UPDATE").fetchall()
        for user_id, source, token, kid in rows:
            if kid == keyring.primary_id:
                current += 1
                continue
            conn.execute(
                "UPDATE source_credentials SET ciphertext = %s, key_id = %s, updated_at = now() "
                "WHERE user_id = %s AND source = %s",
                (keyring.rotate(token), keyring.primary_id, user_id, source),
            )
            rotated += 1
    return rotated, current


def check_secrets_readable(conn: psycopg.Connection, user_ids: list[int]) -> None:
    """Before a run loads any day: the key is set and opens every stored secret of these
    participants, or SecretKeyMissing (exit 2) says so, rather than each of their days failing."""
    rows = conn.execute(
        "SELECT user_id, ciphertext FROM source_credentials WHERE user_id = ANY(%s) ORDER BY user_id", (user_ids,)
    ).fetchall()
    conn.commit()
    if not rows:
        return
    keyring = Keyring.from_environment()
    for user_id, token in rows:
        try:
            keyring.decrypt(token)
        except SecretKeyMissing:
            raise SecretKeyMissing(
                f"participant {user_id}'s stored secret cannot be decrypted with the configured keys "
                f"({ENV_SECRET_KEY}); nothing was loaded"
            ) from None
