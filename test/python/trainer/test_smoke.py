"""`python -m avatar_trainer.smoke`: the CPU job of `avatar doctor --smoke`. A temp dir plays the
Cloud Storage FUSE mount (AVATAR_GCS_FUSE_ROOT), laid out as the CLI writes it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from .conftest import kv, subprocess_env

PROBE = b"avatar smoke probe\n" * 64
PROBE_SHA = hashlib.sha256(PROBE).hexdigest()


def _mount(tmp_path, probe: bytes | None = PROBE):
    """/gcs/bkt/avatar/_smoke/s1/{in/datasets/probe.bin, out/} as the job would see them."""
    root = tmp_path / "gcs"
    probe_dir = root / "bkt" / "avatar" / "_smoke" / "s1" / "in"
    if probe is not None:
        (probe_dir / "datasets").mkdir(parents=True)
        (probe_dir / "datasets" / "probe.bin").write_bytes(probe)
    else:
        (root / "bkt").mkdir(parents=True)
    return root, probe_dir


def _argv(sha=PROBE_SHA):
    return ["--probe-dir", "gs://bkt/avatar/_smoke/s1/in", "--probe", "datasets/probe.bin", "--probe-sha256", sha,
            "--marker", "gs://bkt/avatar/_smoke/s1/out/marker.json", "--stamp", "s1"]


def _run(root, sha=PROBE_SHA):
    """`python -m avatar_trainer.smoke …` exactly as the job runs it."""
    return subprocess.run([sys.executable, "-m", "avatar_trainer.smoke", *_argv(sha)], capture_output=True, text=True,
                          timeout=300, env=subprocess_env(AVATAR_GCS_FUSE_ROOT=str(root)))


def _main(root, monkeypatch, capsys, sha=PROBE_SHA):
    """The same in this process (the libraries are imported once for all tests): (exit code, stdout)."""
    from avatar_trainer import smoke

    monkeypatch.setenv("AVATAR_GCS_FUSE_ROOT", str(root))
    code = smoke.main(smoke.parse_args(_argv(sha)))
    return code, capsys.readouterr().out


def _checks(marker: dict) -> dict:
    return {c["name"]: c for c in marker["checks"]}


def test_all_checks_pass_and_the_marker_records_them(tmp_path):
    root, _ = _mount(tmp_path)
    run = _run(root)
    assert run.returncode == 0, run.stderr
    lines = [kv(ln) for ln in run.stdout.splitlines() if ln.startswith("check=")]
    assert [(ln["check"], ln["status"]) for ln in lines] == [
        ("mount-list", "ok"), ("mount-read", "ok"), ("trainer-import", "ok"), ("cuda", "ok"), ("mount-write", "ok")]

    marker_path = root / "bkt" / "avatar" / "_smoke" / "s1" / "out" / "marker.json"
    marker = json.loads(marker_path.read_text())
    assert marker["ok"] is True and marker["schema"] == 1 and marker["stamp"] == "s1"
    checks = _checks(marker)
    assert set(checks) == {"mount-list", "mount-read", "trainer-import", "cuda"}
    # The versions the training image is pinned to (templates/trainer/pyproject.toml).
    assert marker["versions"]["torch"].startswith("2.3.1")
    assert marker["versions"]["diffusers"] == "0.32.1"
    assert marker["versions"]["peft"] == "0.14.0"
    assert checks["cuda"]["available"] in (True, False)
    # No temporary file is left beside the marker: it was renamed into place.
    assert [p.name for p in marker_path.parent.iterdir()] == ["marker.json"]


def test_a_probe_the_mount_does_not_show_fails_listing_and_reading_but_still_writes_the_marker(tmp_path, monkeypatch, capsys):
    root, _ = _mount(tmp_path, probe=None)
    code, _ = _main(root, monkeypatch, capsys)
    assert code == 1
    marker = json.loads((root / "bkt" / "avatar" / "_smoke" / "s1" / "out" / "marker.json").read_text())
    checks = _checks(marker)
    assert marker["ok"] is False
    assert checks["mount-list"]["status"] == "fail" and "not a directory" in checks["mount-list"]["detail"]
    assert checks["mount-read"]["status"] == "fail"
    assert checks["trainer-import"]["status"] == "ok"


def test_a_directory_that_does_not_list_its_object_fails_only_the_listing(tmp_path, monkeypatch):
    """A mount without implicit directories reads a path it cannot list: the listing check says so."""
    from avatar_trainer import smoke

    _, probe_dir = _mount(tmp_path)
    real = smoke.os.listdir
    monkeypatch.setattr(smoke.os, "listdir", lambda p: [] if str(p).endswith("/in") else real(p))
    listing = smoke.check_listing(probe_dir, "datasets/probe.bin")
    assert listing["status"] == "fail" and listing["detail"].endswith("lists nothing, not datasets")
    assert smoke.check_read(probe_dir, "datasets/probe.bin", PROBE_SHA)["status"] == "ok"


def test_wrong_bytes_fail_the_read_check(tmp_path, monkeypatch, capsys):
    root, _ = _mount(tmp_path, probe=b"something else")
    code, _ = _main(root, monkeypatch, capsys)
    assert code == 1
    marker = json.loads((root / "bkt" / "avatar" / "_smoke" / "s1" / "out" / "marker.json").read_text())
    assert _checks(marker)["mount-list"]["status"] == "ok"
    assert "expected" in _checks(marker)["mount-read"]["detail"]


def test_a_library_name_the_image_lacks_fails_the_import_check(monkeypatch):
    from avatar_trainer import smoke

    monkeypatch.setitem(smoke.LIBRARY_NAMES, "peft", ("LoraConfig", "NoSuchThing"))
    result, versions = smoke.check_imports()
    assert result["status"] == "fail"
    assert result["detail"] == "ImportError: peft has no NoSuchThing"
    assert versions == {}


def test_an_unwritable_marker_location_fails_the_run(tmp_path, monkeypatch, capsys):
    root, _ = _mount(tmp_path)
    (root / "bkt" / "avatar" / "_smoke" / "s1" / "out").write_text("a file where the folder should be")
    code, out = _main(root, monkeypatch, capsys)
    assert code == 1
    assert "check=mount-write status=fail" in out


def test_bad_arguments_exit_2(capsys):
    from avatar_trainer import smoke

    with pytest.raises(SystemExit) as exited:
        smoke.parse_args(_argv(sha="abc"))
    assert exited.value.code == 2
    assert "--probe-sha256 must be 64 lowercase hex characters" in capsys.readouterr().err
