"""SM2 signatures with SM3 (GB/T 32918.2-2016, GM/T 0009-2012) through the system's OpenSSL 3 ``libcrypto``.

Owns: generating SM2 keys, reading and writing them as PKCS#8 PEM (what ``openssl genpkey -algorithm SM2``
writes), the 65-byte uncompressed public point, and signing / verifying bytes with SM2-with-SM3 under an explicit
distinguishing ID, with the signature DER-encoded as GM/T 0009 §7.2 ``SM2Signature`` (what OpenSSL makes and takes).
Must not import: anything but the standard library and ``service.core.errors``.

Why OpenSSL through ``ctypes`` (and how it is kept sound): ``cryptography`` (the project's crypto library) has SM3
but no SM2 (no SM2 curve, no distinguishing ID). The maintained SM2 implementation on every Linux the service runs
on is OpenSSL 3's, the one the ``openssl`` command line uses, security-patched with the distribution. This module
calls its documented EVP API exactly as the SM2(7) manual page shows (``EVP_PKEY_CTX_set1_id`` on the key context,
``EVP_MD_CTX_set_pkey_ctx``, ``EVP_DigestSign``/``EVP_DigestVerify`` with ``EVP_sm3()``). To keep a foreign call
from corrupting memory: every function has its exact ``argtypes``/``restype`` declared (no pointer is truncated to
an ``int``), every input buffer is a Python ``bytes`` that outlives the call and is passed with its length, every
output buffer is sized by OpenSSL first and allocated here, every OpenSSL object is created and freed within one
call (``try``/``finally``; no object outlives a function, so there is nothing to free twice or leak), and the
OpenSSL error queue is cleared after each call. The distinguishing ID is always set explicitly: OpenSSL 3.0 uses an
*empty* ID when none is set, not GM/T 0009's default ``1234567812345678``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from ctypes import POINTER, byref, c_char_p, c_int, c_long, c_size_t, c_ulong, c_void_p

from service.core.errors import MalformedKey

__all__ = [
    "DEFAULT_ID",
    "POINT_SIZE",
    "Sm2Unavailable",
    "check_id",
    "check_point",
    "generate_pem",
    "public_point",
    "sign",
    "verify",
]

# GM/T 0009-2012 §10 (and GB/T 35276): the default user distinguishing ID.
DEFAULT_ID = b"1234567812345678"
POINT_SIZE = 65  # 0x04 || X (32 bytes) || Y (32 bytes), GB/T 32918.1 §4.2.9
MAX_ID_SIZE = 255
# SubjectPublicKeyInfo DER prefix for an SM2 key: id-ecPublicKey with the SM2 curve OID 1.2.156.10197.1.301,
# then the BIT STRING header for the 65-byte point.
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
_MAX_SIGNATURE = 80  # DER SEQUENCE of two INTEGERs of at most 33 bytes: 72; room to spare
_BIO_CTRL_INFO = 3


class Sm2Unavailable(MalformedKey):
    """OpenSSL 3's libcrypto (with SM2) cannot be loaded on this machine."""


def check_id(distid: bytes) -> None:
    """:raise MalformedKey: the distinguishing ID is empty or longer than 255 bytes."""
    if not isinstance(distid, bytes) or not 1 <= len(distid) <= MAX_ID_SIZE:
        raise MalformedKey(f"the SM2 distinguishing ID must be 1 to {MAX_ID_SIZE} bytes, got {distid!r}")


def _declare(lib: ctypes.CDLL) -> None:
    spec: dict[str, tuple[list[object], object]] = {
        "OpenSSL_version_num": ([], c_ulong),
        "ERR_clear_error": ([], None),
        "BIO_new_mem_buf": ([c_void_p, c_int], c_void_p),
        "BIO_s_mem": ([], c_void_p),
        "BIO_new": ([c_void_p], c_void_p),
        "BIO_ctrl": ([c_void_p, c_int, c_long, c_void_p], c_long),
        "BIO_free": ([c_void_p], c_int),
        "PEM_read_bio_PrivateKey": ([c_void_p, c_void_p, c_void_p, c_void_p], c_void_p),
        "PEM_write_bio_PrivateKey": ([c_void_p, c_void_p, c_void_p, c_void_p, c_int, c_void_p, c_void_p], c_int),
        "d2i_PUBKEY": ([c_void_p, POINTER(c_void_p), c_long], c_void_p),
        "EVP_PKEY_is_a": ([c_void_p, c_char_p], c_int),
        "EVP_PKEY_free": ([c_void_p], None),
        "EVP_PKEY_get_octet_string_param": ([c_void_p, c_char_p, c_void_p, c_size_t, POINTER(c_size_t)], c_int),
        "EVP_PKEY_CTX_new": ([c_void_p, c_void_p], c_void_p),
        "EVP_PKEY_CTX_new_from_name": ([c_void_p, c_char_p, c_char_p], c_void_p),
        "EVP_PKEY_CTX_free": ([c_void_p], None),
        "EVP_PKEY_CTX_set1_id": ([c_void_p, c_void_p, c_int], c_int),
        "EVP_PKEY_keygen_init": ([c_void_p], c_int),
        "EVP_PKEY_generate": ([c_void_p, POINTER(c_void_p)], c_int),
        "EVP_MD_CTX_new": ([], c_void_p),
        "EVP_MD_CTX_free": ([c_void_p], None),
        "EVP_MD_CTX_set_pkey_ctx": ([c_void_p, c_void_p], None),
        "EVP_sm3": ([], c_void_p),
        "EVP_DigestSignInit": ([c_void_p, c_void_p, c_void_p, c_void_p, c_void_p], c_int),
        "EVP_DigestSign": ([c_void_p, c_void_p, POINTER(c_size_t), c_void_p, c_size_t], c_int),
        "EVP_DigestVerifyInit": ([c_void_p, c_void_p, c_void_p, c_void_p, c_void_p], c_int),
        "EVP_DigestVerify": ([c_void_p, c_void_p, c_size_t, c_void_p, c_size_t], c_int),
    }
    for name, (argtypes, restype) in spec.items():
        fn = getattr(lib, name)  # AttributeError: not OpenSSL 3
        fn.argtypes = argtypes
        fn.restype = restype


@functools.cache
def _lib() -> ctypes.CDLL:
    """The system's OpenSSL 3 libcrypto with every function used here declared.

    :raise Sm2Unavailable: no libcrypto.so.3, or one older than 3.0 or without SM2.
    """
    names = ["libcrypto.so.3", "libcrypto.3.dylib"]
    found = ctypes.util.find_library("crypto")
    if found is not None:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            _declare(lib)
        except (OSError, AttributeError):
            continue
        if lib.OpenSSL_version_num() < 0x30000000:
            continue
        if not lib.EVP_sm3():
            continue
        return lib
    raise Sm2Unavailable(
        "SM2 needs OpenSSL 3's libcrypto (libcrypto.so.3, Debian/Ubuntu package libssl3), not found on this machine"
    )


def _buf(data: bytes) -> c_void_p:
    """A pointer to the bytes of ``data`` (kept alive by the caller, which holds ``data``)."""
    return ctypes.cast(c_char_p(data), c_void_p)


def _pkey_from_point(lib: ctypes.CDLL, point: bytes) -> int:
    """A new EVP_PKEY (caller frees) for the SM2 public point. :raise MalformedKey: not a point on the curve."""
    if not isinstance(point, bytes) or len(point) != POINT_SIZE or point[0] != 0x04:
        raise MalformedKey(f"an SM2 public key is {POINT_SIZE} bytes 0x04 || X || Y (uncompressed point)")
    der = _SPKI_PREFIX + point
    cursor = c_void_p(ctypes.cast(c_char_p(der), c_void_p).value)
    pkey = lib.d2i_PUBKEY(None, byref(cursor), len(der))
    lib.ERR_clear_error()
    if not pkey:
        raise MalformedKey("the SM2 public key is not a point on the SM2 curve")
    if lib.EVP_PKEY_is_a(pkey, b"SM2") != 1:
        lib.EVP_PKEY_free(pkey)
        raise MalformedKey("OpenSSL did not read the key as an SM2 key")
    return int(pkey)


def _pkey_from_pem(lib: ctypes.CDLL, pem: bytes) -> int:
    """A new EVP_PKEY (caller frees) from a PEM private key. :raise MalformedKey: unreadable or not SM2."""
    bio = lib.BIO_new_mem_buf(_buf(pem), len(pem))
    if not bio:
        raise MemoryError("BIO_new_mem_buf")
    try:
        pkey = lib.PEM_read_bio_PrivateKey(bio, None, None, None)
    finally:
        lib.BIO_free(bio)
        lib.ERR_clear_error()
    if not pkey:
        raise MalformedKey("not a PEM private key (expected PKCS#8, as 'openssl genpkey -algorithm SM2' writes)")
    if lib.EVP_PKEY_is_a(pkey, b"SM2") != 1:
        lib.EVP_PKEY_free(pkey)
        raise MalformedKey("the PEM private key is not an SM2 key")
    return int(pkey)


def _point_of(lib: ctypes.CDLL, pkey: int) -> bytes:
    out = ctypes.create_string_buffer(POINT_SIZE)
    size = c_size_t(0)
    ok = lib.EVP_PKEY_get_octet_string_param(pkey, b"pub", out, POINT_SIZE, byref(size))
    lib.ERR_clear_error()
    if ok != 1 or size.value != POINT_SIZE or out.raw[0] != 0x04:
        raise MalformedKey("cannot read the SM2 public key as an uncompressed point")
    return out.raw


def check_point(point: bytes) -> None:
    """:raise MalformedKey: ``point`` is not an uncompressed point on the SM2 curve. :raise Sm2Unavailable:"""
    lib = _lib()
    lib.EVP_PKEY_free(_pkey_from_point(lib, point))


def generate_pem() -> bytes:
    """A new SM2 private key (OpenSSL's generator) as unencrypted PKCS#8 PEM."""
    lib = _lib()
    ctx = lib.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
    if not ctx:
        raise Sm2Unavailable("OpenSSL cannot make SM2 keys here")
    pkey = c_void_p()
    bio = None
    try:
        if lib.EVP_PKEY_keygen_init(ctx) != 1 or lib.EVP_PKEY_generate(ctx, byref(pkey)) != 1 or not pkey:
            raise Sm2Unavailable("OpenSSL failed to generate an SM2 key")
        bio = lib.BIO_new(lib.BIO_s_mem())
        if not bio or lib.PEM_write_bio_PrivateKey(bio, pkey, None, None, 0, None, None) != 1:
            raise Sm2Unavailable("OpenSSL failed to write the SM2 key")
        data = c_void_p()
        n = lib.BIO_ctrl(bio, _BIO_CTRL_INFO, 0, byref(data))
        if n <= 0 or not data.value:
            raise Sm2Unavailable("OpenSSL wrote an empty SM2 key")
        return ctypes.string_at(data.value, n)
    finally:
        if bio:
            lib.BIO_free(bio)
        if pkey:
            lib.EVP_PKEY_free(pkey)
        lib.EVP_PKEY_CTX_free(ctx)
        lib.ERR_clear_error()


def public_point(pem: bytes) -> bytes:
    """The 65-byte public point of a PEM SM2 private key. :raise MalformedKey: not an SM2 private key."""
    lib = _lib()
    pkey = _pkey_from_pem(lib, pem)
    try:
        return _point_of(lib, pkey)
    finally:
        lib.EVP_PKEY_free(pkey)


def _digest_ctx(lib: ctypes.CDLL, pkey: int, distid: bytes, *, signing: bool) -> tuple[int, int]:
    """(EVP_MD_CTX, EVP_PKEY_CTX), initialised for SM2-with-SM3 under ``distid``; the caller frees both."""
    mctx = lib.EVP_MD_CTX_new()
    pctx = lib.EVP_PKEY_CTX_new(pkey, None)
    if not mctx or not pctx:
        if mctx:
            lib.EVP_MD_CTX_free(mctx)
        if pctx:
            lib.EVP_PKEY_CTX_free(pctx)
        raise MemoryError("EVP_MD_CTX_new / EVP_PKEY_CTX_new")
    try:
        if lib.EVP_PKEY_CTX_set1_id(pctx, _buf(distid), len(distid)) != 1:
            raise Sm2Unavailable("OpenSSL refused the SM2 distinguishing ID")
        lib.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
        init = lib.EVP_DigestSignInit if signing else lib.EVP_DigestVerifyInit
        if init(mctx, None, lib.EVP_sm3(), None, pkey) != 1:
            raise Sm2Unavailable("OpenSSL could not start an SM2-with-SM3 operation")
    except BaseException:
        lib.EVP_MD_CTX_free(mctx)
        lib.EVP_PKEY_CTX_free(pctx)
        lib.ERR_clear_error()
        raise
    return int(mctx), int(pctx)


def sign(pem: bytes, distid: bytes, message: bytes) -> bytes:
    """SM2 signature (SM3, ``distid``) of ``message`` with the PEM private key, DER ``SM2Signature``."""
    check_id(distid)
    lib = _lib()
    pkey = _pkey_from_pem(lib, pem)
    try:
        mctx, pctx = _digest_ctx(lib, pkey, distid, signing=True)
        try:
            out = ctypes.create_string_buffer(_MAX_SIGNATURE)
            size = c_size_t(_MAX_SIGNATURE)
            if lib.EVP_DigestSign(mctx, out, byref(size), _buf(message), len(message)) != 1:
                raise Sm2Unavailable("OpenSSL failed to make the SM2 signature")
            return out.raw[: size.value]
        finally:
            lib.EVP_MD_CTX_free(mctx)
            lib.EVP_PKEY_CTX_free(pctx)
    finally:
        lib.EVP_PKEY_free(pkey)
        lib.ERR_clear_error()


def verify(point: bytes, distid: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (DER ``SM2Signature``) is a valid SM2-with-SM3 signature of ``message`` under
    ``distid`` by the key ``point``. OpenSSL rejects any encoding but strict DER (it re-encodes and compares).

    :raise MalformedKey: ``point`` is not an SM2 public key, or ``distid`` is out of range.
    :raise Sm2Unavailable: no OpenSSL 3 here.
    """
    check_id(distid)
    lib = _lib()
    pkey = _pkey_from_point(lib, point)
    try:
        mctx, pctx = _digest_ctx(lib, pkey, distid, signing=False)
        try:
            if not signature or len(signature) > _MAX_SIGNATURE:
                return False
            return bool(lib.EVP_DigestVerify(mctx, _buf(signature), len(signature), _buf(message), len(message)) == 1)
        finally:
            lib.EVP_MD_CTX_free(mctx)
            lib.EVP_PKEY_CTX_free(pctx)
    finally:
        lib.EVP_PKEY_free(pkey)
        lib.ERR_clear_error()
