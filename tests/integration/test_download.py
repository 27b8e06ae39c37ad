"""``GET /download/``: the service serves its own verifier (issue 12 item 2).

The end-to-end test runs ``evidence serve`` on 127.0.0.1, reads the install command off a real certificate
(pdftotext), runs exactly that command in a fresh virtual environment with no package index and no pip
configuration, and verifies the certificate with the ``evidence`` it installed. The QR code is read back
(pdftoppm + zbarimg). The wheels come from ``build/download`` (scripts/setup builds them).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.config import DEFAULT_DOWNLOAD_DIR
from service.core.distribution import install_command, is_loopback_url
from tests.conftest import skip_or_fail
from tests.integration.test_serve import free_port, http

pytestmark = pytest.mark.slow

ENV_KEYS_TO_DROP = ("DATABASE_URL", "EVIDENCE_BROKER_URL", "EVIDENCE_DATA_DIR", "EVIDENCE_SIGNING_KEY_FILE")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} not installed (scripts/install-system-deps)")
    assert path is not None
    return path


def clean_pip_env(env: dict[str, str]) -> dict[str, str]:
    """No pip configuration of this machine (index, find-links, cache) may help the install."""
    out = {k: v for k, v in env.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    out["PIP_CONFIG_FILE"] = os.devnull
    out["PIP_NO_CACHE_DIR"] = "1"
    out["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return out


def read_qr(pdf: Path, tmp_path: Path) -> str:
    subprocess.run([tool("pdftoppm"), "-r", "200", "-png", "-singlefile", str(pdf), str(tmp_path / "page")], check=True)
    out = subprocess.run(
        [tool("zbarimg"), "--quiet", "--raw", str(tmp_path / "page.png")], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def download_dir(tmp_path: Path) -> Path:
    """The dependency wheels scripts/setup collected, and a wheel of this project built now (offline) from a copy
    of the sources, so the test never installs a stale build."""
    if not any(DEFAULT_DOWNLOAD_DIR.glob("evidence_ledger-*.whl")):
        skip_or_fail(f"no verifier wheels in {DEFAULT_DOWNLOAD_DIR}: run scripts/setup (scripts/build-download)")
    out = tmp_path / "download"
    out.mkdir()
    for wheel in DEFAULT_DOWNLOAD_DIR.glob("*.whl"):
        if not wheel.name.startswith("evidence_ledger-"):
            shutil.copy2(wheel, out / wheel.name)
    root = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("service", "workers"):
        shutil.copytree(root / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out)]
        + [str(src)],
        check=True,
        capture_output=True,
        env=clean_pip_env(dict(os.environ)),
    )
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path, subprocess.Popen[bytes]]]:
    tmp_path = tmp_path_factory.mktemp("served")
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS_TO_DROP}
    env["EVIDENCE_DOWNLOAD_DIR"] = str(download_dir(tmp_path))
    env["EVIDENCE_BATCH_MAX_AGE"] = "0.3"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env["EVIDENCE_PUBLIC_URL"] = base
    data_dir = tmp_path / "data"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log_path.read_text()
        try:
            if http("GET", f"{base}/readyz")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    try:
        yield base, data_dir, log_path, process
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_stranger_installs_the_verifier_from_the_certificate_and_verifies_it(
    tmp_path: Path, served: tuple[str, Path, Path, subprocess.Popen[bytes]]
) -> None:
    base, data_dir, log_path, _process = served
    # evidence serve warned loudly: 127.0.0.1 is a public URL only this machine can reach
    banner = log_path.read_text()
    assert "WARNING: the public URL is http://127.0.0.1" in banner
    # ... and printed the next steps (item 5), each a working address
    assert "Next steps" in banner
    for line in (
        "start page      " + base + "/",
        "check a number  " + base + "/check",
        "verifier        " + base + "/download/",
        base + "/openapi.json",
    ):
        assert line in banner, line
    assert http("GET", base + "/")[0] == 200

    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS_TO_DROP}
    created = subprocess.run(
        [sys.executable, "-m", "service", "tenant", "create", "court", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    key = created.stdout.splitlines()[-1]
    contract = tmp_path / "contract.pdf"
    contract.write_bytes(b"%PDF-1.7 the contract " + os.urandom(4000))
    auth = {"Authorization": f"Bearer {key}"}
    status, _h, body = http(
        "POST", f"{base}/v1/evidence", body=contract.read_bytes(), headers={**auth, "Content-Type": "application/pdf"}
    )
    assert status == 202, body
    evidence_id = json.loads(body)["id"]
    deadline = time.monotonic() + 20
    while (got := http("GET", f"{base}/v1/evidence/{evidence_id}/certificate.pdf", headers=auth))[0] != 200:
        assert got[0] == 202 and time.monotonic() < deadline, got
        time.sleep(0.2)
    certificate = tmp_path / "certificate.pdf"
    certificate.write_bytes(got[2])

    # what the certificate prints, read back as a person (or pdftotext) reads it
    text = " ".join(
        subprocess.run(
            [tool("pdftotext"), str(certificate), "-"], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    printed = re.search(r"pip install --no-index --find-links \S+ evidence-ledger", text)
    assert printed is not None, text
    assert (
        printed.group(0)
        == install_command(base)
        == f"pip install --no-index --find-links {base}/download/ evidence-ledger"
    )
    # the QR code opens public checking with this certificate's number, on this server
    assert read_qr(certificate, tmp_path) == f"{base}/check?id={evidence_id}"
    status, _h, checking = http("GET", f"{base}/check?id={evidence_id}")
    assert status == 200 and b'id="check-panel"' in checking

    # the download page is a find-links page: one anchor per wheel, with its SHA-256
    status, headers, page = http("GET", f"{base}/download/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert re.search(rb'href="evidence_ledger-[^"]+\.whl#sha256=[0-9a-f]{64}"', page)
    assert b'href="evidence-ledger-verify.html"' in page

    # a fresh environment, no index, no pip configuration: exactly the printed command
    fresh = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True, clear=True).create(fresh)
    bin_dir = fresh / "bin"
    pip_env = clean_pip_env(dict(os.environ))
    pip_env["PATH"] = f"{bin_dir}{os.pathsep}{pip_env.get('PATH', '')}"
    install = subprocess.run(
        shlex.split(printed.group(0)), capture_output=True, text=True, env=pip_env, cwd=tmp_path, timeout=300
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert shutil.which("pip", path=pip_env["PATH"]) == str(bin_dir / "pip")
    # the verifier install pulls in no web framework, database or queue
    for module in ("flask", "sqlalchemy", "celery", "gunicorn", "requests"):
        probe = subprocess.run([str(bin_dir / "python"), "-c", f"import {module}"], capture_output=True, env=pip_env)
        assert probe.returncode != 0, f"{module} was installed with the verifier"

    # the installed verifier fetches the operator's keys (fingerprints shown, trust file saved) ...
    fetched = subprocess.run(
        [str(bin_dir / "evidence"), "keys", "fetch", base, "-o", "operator.keys"],
        capture_output=True,
        text=True,
        env=pip_env,
        cwd=tmp_path,
    )
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert "fingerprint" in fetched.stdout
    # ... and verifies the certificate with them
    verified = subprocess.run(
        [str(bin_dir / "evidence"), "verify", str(certificate), str(contract), "--key", "operator.keys"],
        capture_output=True,
        text=True,
        env=pip_env,
        cwd=tmp_path,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VALID" in verified.stdout
    refused = subprocess.run(
        [str(bin_dir / "evidence"), "serve"], capture_output=True, text=True, env=pip_env, cwd=tmp_path
    )
    assert refused.returncode == 2 and "evidence-ledger[server]" in refused.stderr
    helped = subprocess.run([str(bin_dir / "evidence"), "--help"], capture_output=True, text=True, env=pip_env)
    assert helped.returncode == 0 and "verify" in helped.stdout


def test_download_files_and_refusals(served: tuple[str, Path, Path, subprocess.Popen[bytes]]) -> None:
    base, _data_dir, _log, _process = served
    status, headers, page = http("GET", f"{base}/download/evidence-ledger-verify.html")
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert b'id="published-keys">{"keys": [{"vkey"' in page
    name = re.search(
        rb'href="(evidence_ledger-[^"#]+\.whl)#sha256=([0-9a-f]{64})"', http("GET", f"{base}/download/")[2]
    )
    assert name is not None
    status, _h, wheel = http("GET", f"{base}/download/{name.group(1).decode()}")
    import hashlib

    assert status == 200 and hashlib.sha256(wheel).hexdigest() == name.group(2).decode()
    for bad in ("..%2Fpyproject.toml", "nothing.whl", ".built", "x.txt"):
        status, headers, body = http("GET", f"{base}/download/{bad}")
        assert status == 404 and headers["Content-Type"] == "application/problem+json", (bad, body)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        (None, True),
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000/", True),
        ("http://[::1]:8000", True),
        ("http://0.0.0.0", True),
        ("https://ledger.example.org", False),
        ("http://10.1.2.3:8000", False),
    ],
)
def test_loopback_urls(url: str | None, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_certificate_command_warns_loudly_about_a_loopback_public_url(tmp_path: Path) -> None:
    receipt = Path(__file__).resolve().parents[1] / "vectors" / "receipts" / "single.json"
    runner = CliRunner()
    out = tmp_path / "c.pdf"
    warned = runner.invoke(cli, ["certificate", str(receipt), "-o", str(out)], env={"EVIDENCE_PUBLIC_URL": ""})
    assert warned.exit_code == 0, warned.output
    assert "WARNING: the public URL is not set" in warned.stderr
    quiet = runner.invoke(
        cli, ["certificate", str(receipt), "-o", str(out), "--server-url", "https://ledger.example.org"]
    )
    assert quiet.exit_code == 0 and "WARNING" not in quiet.stderr
