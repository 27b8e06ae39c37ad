"""HTTP client of the C2SP tlog-witness protocol: ``POST <witness URL>/add-checkpoint`` (SPEC §9).

Owns: one keep-alive ``requests`` session per thread, no redirects (the only URLs asked are the ones in the
operator's policy file), a timeout, and a cap on the answer's size.
Must not be imported by the offline verifier (it imports ``requests``).
"""

from __future__ import annotations

import threading

import requests

from service.core.errors import WitnessUnavailable

MAX_ANSWER = 64 * 1024
_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment: witnesses are reached directly
        _local.session = session
    return session


def post_add_checkpoint(url: str, body: bytes, timeout: float) -> tuple[int, str, bytes]:
    """POST ``body`` to ``<url>/add-checkpoint``; return (status, content type, body).

    :raise WitnessUnavailable: connection refused or reset, timeout, or an answer larger than 64 KiB.
    """
    target = url.rstrip("/") + "/add-checkpoint"
    try:
        with _session().post(
            target,
            data=body,
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=timeout,
            allow_redirects=False,
            stream=True,
        ) as response:
            content = response.raw.read(MAX_ANSWER + 1, decode_content=True)
            if len(content) > MAX_ANSWER:
                raise WitnessUnavailable(f"{target} answered with more than {MAX_ANSWER} bytes")
            return response.status_code, response.headers.get("Content-Type", ""), content
    except requests.RequestException as exc:
        raise WitnessUnavailable(f"{target}: {exc.__class__.__name__}: {exc}") from None
