"""A second, independent implementation of C2SP ``cosignature/v1`` written from the C2SP texts for the interop
tests. It shares no code with ``service/``: Ed25519 is the RFC 8032 §6 reference algorithm in pure Python, the
note and key formats are re-derived from c2sp.org/signed-note and c2sp.org/tlog-cosignature. Slow; tests only.
"""

from __future__ import annotations

import base64
import hashlib

# --- RFC 8032 §6 (Ed25519 reference code, transcribed) ------------------------------------------

_p = 2**255 - 19
_d = -121665 * pow(121666, _p - 2, _p) % _p
_q = 2**252 + 27742317777372353535851937790883648493
_I = pow(2, (_p - 1) // 4, _p)


def _sha512(s: bytes) -> bytes:
    return hashlib.sha512(s).digest()


def _inv(x: int) -> int:
    return pow(x, _p - 2, _p)


def _point_add(P: tuple[int, int, int, int], Q: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    A = (P[1] - P[0]) * (Q[1] - Q[0]) % _p
    B = (P[1] + P[0]) * (Q[1] + Q[0]) % _p
    C = 2 * P[3] * Q[3] * _d % _p
    D = 2 * P[2] * Q[2] % _p
    E, F, G, H = B - A, D - C, D + C, B + A
    return (E * F % _p, G * H % _p, F * G % _p, E * H % _p)


def _point_mul(s: int, P: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    Q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            Q = _point_add(Q, P)
        P = _point_add(P, P)
        s >>= 1
    return Q


def _point_equal(P: tuple[int, int, int, int], Q: tuple[int, int, int, int]) -> bool:
    if (P[0] * Q[2] - Q[0] * P[2]) % _p != 0:
        return False
    return (P[1] * Q[2] - Q[1] * P[2]) % _p == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _p:
        return None
    x2 = (y * y - 1) * _inv(_d * y * y + 1)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_p + 3) // 8, _p)
    if (x * x - x2) % _p != 0:
        x = x * _I % _p
    if (x * x - x2) % _p != 0:
        return None
    if (x & 1) != sign:
        x = _p - x
    return x


_gy = 4 * _inv(5) % _p
_gx = _recover_x(_gy, 0)
assert _gx is not None
_G = (_gx, _gy, 1, _gx * _gy % _p)


def _compress(P: tuple[int, int, int, int]) -> bytes:
    zinv = _inv(P[2])
    x = P[0] * zinv % _p
    y = P[1] * zinv % _p
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def _decompress(s: bytes) -> tuple[int, int, int, int] | None:
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _p)


def _secret_expand(secret: bytes) -> tuple[int, bytes]:
    h = _sha512(secret)
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def ed25519_public(secret: bytes) -> bytes:
    a, _ = _secret_expand(secret)
    return _compress(_point_mul(a, _G))


def ed25519_sign(secret: bytes, msg: bytes) -> bytes:
    a, prefix = _secret_expand(secret)
    A = _compress(_point_mul(a, _G))
    r = int.from_bytes(_sha512(prefix + msg), "little") % _q
    R = _compress(_point_mul(r, _G))
    h = int.from_bytes(_sha512(R + A + msg), "little") % _q
    s = (r + h * a) % _q
    return R + int.to_bytes(s, 32, "little")


def ed25519_verify(public: bytes, msg: bytes, signature: bytes) -> bool:
    if len(public) != 32 or len(signature) != 64:
        return False
    A = _decompress(public)
    R = _decompress(signature[:32])
    if A is None or R is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _q:
        return False
    h = int.from_bytes(_sha512(signature[:32] + public + msg), "little") % _q
    return _point_equal(_point_mul(s, _G), _point_add(R, _point_mul(h, A)))


# --- c2sp.org/tlog-cosignature, cosignature/v1 ----------------------------------------------------


def key_id(name: str, public: bytes) -> bytes:
    """4-byte key ID: SHA-256(name || "\\n" || 0x04 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + b"\x04" + public).digest()[:4]


def vkey(name: str, public: bytes) -> str:
    return name + "+" + key_id(name, public).hex() + "+" + base64.b64encode(b"\x04" + public).decode()


def message(checkpoint_body: bytes, timestamp: int) -> bytes:
    return b"cosignature/v1\n" + b"time " + str(timestamp).encode() + b"\n" + checkpoint_body


def cosign(name: str, secret: bytes, checkpoint_body: bytes, timestamp: int) -> bytes:
    """The signature line: EM DASH, space, name, space, base64(key ID || u64 BE timestamp || signature), LF."""
    public = ed25519_public(secret)
    sig = ed25519_sign(secret, message(checkpoint_body, timestamp))
    blob = key_id(name, public) + timestamp.to_bytes(8, "big") + sig
    return "\u2014 ".encode() + name.encode() + b" " + base64.b64encode(blob) + b"\n"


def verify_line(name: str, public: bytes, checkpoint_body: bytes, line: bytes) -> int | None:
    """The timestamp if ``line`` is a valid cosignature/v1 of ``checkpoint_body`` by (name, public), else None."""
    prefix = "\u2014 ".encode() + name.encode() + b" "
    if not line.startswith(prefix) or not line.endswith(b"\n"):
        return None
    blob = base64.b64decode(line[len(prefix) : -1], validate=True)
    if len(blob) != 76 or blob[:4] != key_id(name, public):
        return None
    timestamp = int.from_bytes(blob[4:12], "big")
    if ed25519_verify(public, message(checkpoint_body, timestamp), blob[12:]):
        return timestamp
    return None


def body_and_signatures(note: bytes) -> tuple[bytes, list[bytes]]:
    """Split a signed note at its last blank line: text (with final LF) and signature lines (each with LF)."""
    i = note.rindex(b"\n\n")
    return note[: i + 1], [line + b"\n" for line in note[i + 2 : -1].split(b"\n")]
