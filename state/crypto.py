"""Token encryption at rest (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`).

Several comma-separated keys may be configured: the first encrypts, all decrypt, so
keys can be rotated without a migration.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["TokenCipher", "generate_key"]


def generate_key() -> str:
    return Fernet.generate_key().decode()


class TokenCipher:
    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ValueError("TOKEN_ENCRYPTION_KEY is empty")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])

    def __repr__(self) -> str:
        return "TokenCipher(<keys hidden>)"

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same secret encrypted under the first (newest) key."""
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken as exc:
            raise ValueError("token cannot be decrypted with the configured keys") from exc

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken as exc:
            raise ValueError("token cannot be decrypted with the configured keys") from exc
