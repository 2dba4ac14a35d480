from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.hub_server import FakeHub
from tmics_cli import weights as registry
from tmics_cli.cli import app

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TMICS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return tmp_path / "home" / "weights"


def _real(name: str) -> bytes:
    return (REPO / "weights" / registry.REGISTRY[name].filename).read_bytes()


def _fetch(*args: str):
    result = CliRunner().invoke(app, ["fetch-weights", *args])
    return result, result.output.strip().splitlines()


def test_registry_matches_the_shipped_files() -> None:
    for name, entry in registry.REGISTRY.items():
        path = REPO / "weights" / entry.filename
        assert path.stat().st_size == entry.size, name
        assert registry.sha256_of(path) == entry.sha256, f"{name}: update the registry after retraining"
        assert registry.verify(name, path)


def test_download_verifies_and_becomes_the_weights_commands_use(home: Path, monkeypatch) -> None:
    with FakeHub({"tmics-light.safetensors": _real("light")}, registry.HUB_REPO) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result, lines = _fetch("light")
        assert result.exit_code == 0, result.output
        assert (home / "tmics-light.safetensors").read_bytes() == _real("light")
        assert registry.resolve_weights("light") == home / "tmics-light.safetensors"
        gets = [r for r in hub.requests if r[0] == "GET" and "resolve" in r[1]]
        assert len(gets) == 1
        _fetch("light")  # intact copy cached: nothing downloaded again
        assert len([r for r in hub.requests if r[0] == "GET" and "resolve" in r[1]]) == 1
        result, _ = _fetch("light", "--overwrite")  # downloads again and replaces the cached copy
        assert result.exit_code == 0
        assert len([r for r in hub.requests if r[0] == "GET" and "resolve" in r[1]]) == 2
        assert not [p for p in home.iterdir() if p.name.startswith(".")]
        list_result, list_lines = _fetch("--list")
        assert list_result.exit_code == 0 and any("light" in x and " ok " in f" {x} " for x in list_lines)


def test_sha_mismatch_deletes_the_file_and_fails(home: Path, monkeypatch) -> None:
    tampered = bytearray(_real("light"))
    tampered[-1] ^= 0xFF  # same size: only the sha256 can tell
    with FakeHub({"tmics-light.safetensors": bytes(tampered)}, registry.HUB_REPO) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result, lines = _fetch("light")
    assert result.exit_code == 2 and len(lines) == 1 and "sha256" in lines[0] and "deleted" in lines[0]
    assert not (home / "tmics-light.safetensors").exists()
    assert registry.resolve_weights("light") == registry.bundled_path("light")  # used meanwhile
    assert not home.exists()  # no staging folder, no empty cache folder left behind
    home.mkdir(parents=True, exist_ok=True)
    (home / "tmics-light.safetensors").write_bytes(_real("light"))  # a good cached copy ...
    with FakeHub({"tmics-light.safetensors": bytes(tampered)}, registry.HUB_REPO) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result, lines = _fetch("light", "--force")
    assert result.exit_code == 2 and "cached copy was kept" in lines[0]
    assert (home / "tmics-light.safetensors").read_bytes() == _real("light")  # ... survives a bad --force


def test_missing_file_and_server_down_are_one_line(home: Path, monkeypatch) -> None:
    with FakeHub({}, registry.HUB_REPO) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result, lines = _fetch("heavy")
    assert result.exit_code == 2 and len(lines) == 1 and "not found (404)" in lines[0]
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the server is gone now
    result, lines = _fetch("--all")
    assert result.exit_code == 2 and len(lines) == 1 and "cannot be reached" in lines[0]
    assert not home.exists() or not list(home.glob("*.safetensors"))


def test_offline_uses_the_cache_or_says_what_is_missing(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may be contacted
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result, lines = _fetch("heavy")
    assert result.exit_code == 2 and len(lines) == 1 and "offline" in lines[0] and "bundled" in lines[0]
    home.mkdir(parents=True)
    (home / "tmics-heavy.safetensors").write_bytes(_real("heavy"))
    result, lines = _fetch("heavy")
    assert result.exit_code == 0 and "ok" in lines[-1]


def test_verify_deletes_a_corrupt_cached_file(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "tmics-light.safetensors").write_bytes(_real("light"))
    (home / "tmics-heavy.safetensors").write_bytes(b"truncated")
    result, lines = _fetch("--verify")
    assert result.exit_code == 2 and "heavy" in lines[-1]
    assert (home / "tmics-light.safetensors").exists() and not (home / "tmics-heavy.safetensors").exists()
    result, _ = _fetch("--verify")
    assert result.exit_code == 0


def test_bad_arguments(home: Path) -> None:
    for args in ([], ["nothing"]):
        result, lines = _fetch(*args)
        assert result.exit_code == 2 and len(lines) == 1, args


def test_a_bad_endpoint_or_proxy_address_and_a_wrapped_404_are_one_line(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://[::1")  # a traceback: ValueError: Invalid IPv6 URL
    result, lines = _fetch("light", "--force")
    assert result.exit_code == 2 and len(lines) == 1 and "is not a URL" in lines[0], result.output
    monkeypatch.delenv("HF_ENDPOINT")
    monkeypatch.setenv("HTTPS_PROXY", "http://[bad")
    result, lines = _fetch("light", "--force")
    assert result.exit_code == 2 and len(lines) == 1 and "the proxy http://[bad (HTTPS_PROXY)" in lines[0]
    try:
        try:
            raise OSError("404 Client Error: Not Found for url: http://mirror/x")
        except OSError as cause:
            raise ValueError("Force download failed due to the above error.") from cause
    except ValueError as wrapped:
        assert registry._describe(wrapped).startswith("not found (404)")
