"""--log-file: every log line (and the final error) also lands in a file, which on Vertex is an
object in the bucket that `avatar logs` and the CLI's progress read."""

from __future__ import annotations

from .conftest import run_inprocess, train_args


def _file_lines(path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()]


def test_log_file_holds_every_stdout_line_and_a_resumed_run_appends(tiny_sd15_dir, dataset_zip, tmp_path):
    log_file = tmp_path / "logs" / "trainer.log"  # the folder is created
    out, ck = tmp_path / "model", tmp_path / "ckpt"
    first = run_inprocess(train_args(tiny_sd15_dir, dataset_zip, out, ck, "--steps", "2", "--log-file", str(log_file)),
                          out, ck)
    assert first.code == 0, first.stderr
    assert _file_lines(log_file) == first.lines
    assert any(ln.startswith("step=2/2 ") for ln in _file_lines(log_file))

    # The same run again (it resumes from its checkpoint and finds nothing left to do): appended.
    again = run_inprocess(train_args(tiny_sd15_dir, dataset_zip, out, ck, "--steps", "2", "--log-file", str(log_file)),
                          out, ck)
    assert again.code == 0, again.stderr
    assert _file_lines(log_file) == first.lines + again.lines


def test_log_file_ends_with_the_error_of_a_failed_run(tmp_path):
    log_file = tmp_path / "trainer.log"
    run = run_inprocess(["--base", "sd15", "--dataset", str(tmp_path / "missing.zip"), "--output-dir", str(tmp_path / "o"),
                         "--checkpoint-dir", str(tmp_path / "c"), "--log-file", str(log_file)], tmp_path / "o", tmp_path / "c")
    assert run.code == 1
    assert _file_lines(log_file)[-1].startswith("error: ")
    assert _file_lines(log_file)[-1] == run.stderr.strip().splitlines()[-1]


def test_gs_log_file_goes_through_the_fuse_mount_and_is_closed_after_the_run(tmp_path):
    (tmp_path / "bucket").mkdir()
    env = {"AVATAR_GCS_FUSE_ROOT": str(tmp_path)}
    argv = ["--base", "sd15", "--dataset", str(tmp_path / "missing.zip"), "--output-dir", str(tmp_path / "o"),
            "--checkpoint-dir", str(tmp_path / "c")]
    run = run_inprocess([*argv, "--log-file", "gs://bucket/alice/runs/1/logs/trainer.log"], tmp_path / "o",
                        tmp_path / "c", env=env)
    assert run.code == 1
    mirrored = tmp_path / "bucket" / "alice" / "runs" / "1" / "logs" / "trainer.log"
    assert _file_lines(mirrored)[-1].startswith("error: ")
    # A later run in the same process without --log-file writes nothing there.
    before = mirrored.read_text()
    assert run_inprocess(argv, tmp_path / "o", tmp_path / "c").code == 1
    assert mirrored.read_text() == before


def test_an_unwritable_log_file_is_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    run = run_inprocess(["--base", "sd15", "--dataset", str(tmp_path / "x.zip"), "--output-dir", str(tmp_path / "o"),
                         "--checkpoint-dir", str(tmp_path / "c"), "--log-file", str(tmp_path / "a-file" / "trainer.log")],
                        tmp_path / "o", tmp_path / "c")
    assert run.code == 1
    assert run.stderr.startswith("error: --log-file ")
    assert "Traceback" not in run.stderr


def test_step_lines_are_synced_at_most_every_few_seconds_and_other_lines_at_once(tmp_path, monkeypatch):
    """On Cloud Storage FUSE every fsync uploads the whole object: a step line each second must not."""
    from avatar_trainer import log

    syncs = []
    clock = [1000.0]
    monkeypatch.setattr(log.os, "fsync", lambda fd: syncs.append(fd))
    monkeypatch.setattr(log.time, "monotonic", lambda: clock[0])
    log.mirror_to(tmp_path / "trainer.log")
    try:
        log.emit(phase="train", steps=100)
        assert len(syncs) == 1
        for step in range(1, 11):
            clock[0] += 0.3
            log.emit(f"step={step}/100", loss=0.1)
        assert len(syncs) == 1  # 3 s of step lines: written, not uploaded yet
        clock[0] += log.SYNC_EVERY_S
        log.emit("step=11/100", loss=0.1)
        assert len(syncs) == 2
        log.emit("checkpoint", step=11)
        assert len(syncs) == 3
    finally:
        log.close_mirror()
    lines = (tmp_path / "trainer.log").read_text().splitlines()
    assert len(lines) == 13 and lines[0].startswith("phase=train") and lines[-1] == "checkpoint step=11"
