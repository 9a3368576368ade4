"""Faults of the job system, each with its exact outcome (issue 14).

- A damaged job index (jobs.sqlite: header or pages scribbled, truncated, a folder in its place, a
  row with invalid JSON or an unknown state) is moved aside, kept, and rebuilt from the job
  folders; the listing is what it was; the app starts and its Jobs tab shows the warning.
- An index that lost rows (emptied, truncated to nothing, deleted, even under a running job) gets
  them back from the folders.
- An index of a newer schema is refused with the version that wrote it and left untouched; the
  app still starts, its Jobs tab says why it has no jobs, and the Inspector works.
- Cancel is carried out by the owner of the worker: from the command line, a job deaf to SIGTERM
  is still killed after the command has exited; the log and the final state say what happened.

Real SQLite files, real worker processes and signals, the real command line and the real app."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import translating_episode
from test_jobs import LONG, wait_progress, wait_until

from stvla_core.episodes import save_episode
from stvla_core.jobs import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobManager,
    JobStore,
    JobStoreVersionError,
)
from stvla_core.jobs.store import process_alive
from stvla_core.jobs.worker import run_job

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
CONTROLS = (8, "lk", "episode", 5, 2)
ASIDE = re.compile(r"^jobs\.sqlite\.damaged-\d{8}-\d{6}$")


def populate(root: Path) -> list[Job]:
    """Five jobs made by the real store and job code: two succeeded, one failed, one cancelled
    while queued, one queued. Connections are closed, so the whole index is in jobs.sqlite."""
    store = JobStore(root)
    for message in ("first", "second"):
        job = store.create("sleep", {"steps": 2, "seconds": 0.0, "message": message})
        assert run_job(job.id, store) == 0
    failing = store.create("sleep", {"steps": 2, "seconds": 0.0, "fail_at": 1})
    assert run_job(failing.id, store) == 1
    dropped = store.create("sleep", {"steps": 5})
    assert store.finish(dropped.id, CANCELLED, error="cancelled by the user", from_states=(QUEUED,))
    store.create("sleep", {"steps": 1, "seconds": 0.0})
    jobs = store.list()
    store.close()
    assert [j.state for j in jobs] == [QUEUED, CANCELLED, FAILED, SUCCEEDED, SUCCEEDED]
    assert not (root / "jobs.sqlite-wal").exists()
    return jobs


def sql(db: Path, statement: str, *args: object) -> None:
    con = sqlite3.connect(db)
    con.execute(statement, args)
    con.commit()
    con.close()


def scribble(db: Path, offset: int, size: int) -> None:
    with open(db, "r+b") as f:
        f.seek(offset)
        f.write(b"\xa5" * size)


# name -> (damage, the problem the warning names); each damage returns nothing.
DAMAGED = {
    "header scribbled": (
        lambda db, jobs: scribble(db, 0, 100),
        "SQLite cannot read it: file is not a database",
    ),
    "pages scribbled": (
        lambda db, jobs: scribble(db, 4096, 8192),
        "SQLite cannot read it: database disk image is malformed",
    ),
    "truncated to half": (
        lambda db, jobs: os.truncate(db, db.stat().st_size // 2),
        "SQLite cannot read it: database disk image is malformed",
    ),
    "a folder in its place": (
        lambda db, jobs: (db.unlink(), db.mkdir(), (db / "x").write_text("x")),
        "jobs.sqlite is a folder, not a database file",
    ),
    "a row with invalid JSON": (
        lambda db, jobs: sql(db, "UPDATE jobs SET config = '{\"steps\": 2,' WHERE id = ?", jobs[3].id),
        "job {3}: config is not valid JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 13 (char 12))",
    ),
    "a row with a JSON list": (
        lambda db, jobs: sql(db, "UPDATE jobs SET config = '[1, 2]' WHERE id = ?", jobs[0].id),
        "job {0}: config is a JSON list, expected an object",
    ),
    "a row with an unknown state": (
        lambda db, jobs: sql(db, "UPDATE jobs SET state = 'paused' WHERE id = ?", jobs[2].id),
        "job {2}: unknown state 'paused'",
    ),
}


def damage(root: Path, jobs: list[Job], case: str) -> tuple[str, bytes | None]:
    """Apply a DAMAGED case; returns the problem text and the damaged file's bytes (None for a
    folder)."""
    db = root / "jobs.sqlite"
    fn, problem = DAMAGED[case]
    fn(db, jobs)
    return problem.format(*(j.id for j in jobs)), db.read_bytes() if db.is_file() else None


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_index_is_moved_aside_and_rebuilt_from_the_job_folders(tmp_path, case):
    root = tmp_path / "jobs"
    jobs = populate(root)
    problem, damaged_bytes = damage(root, jobs, case)

    store = JobStore(root)
    [aside] = [p for p in root.iterdir() if p.name.startswith("jobs.sqlite.damaged")]
    assert ASIDE.match(aside.name)
    assert store.warnings == [
        f"the job index {root / 'jobs.sqlite'} was damaged ({problem}); it was moved aside to "
        f"{aside.name} (kept) and rebuilt from 5 job folder(s)"
    ]
    assert store.list() == jobs  # every field of every job, from the folders' job.json
    assert store.read_result(jobs[4].id) == {"steps": 2, "message": "first"}
    assert "job failed: RuntimeError: failing at step 1" in store.read_log(jobs[2].id)
    if damaged_bytes is None:
        assert (aside / "x").read_text() == "x"
    else:
        assert aside.read_bytes() == damaged_bytes  # kept as it was, for inspection
    assert JobStore(root).warnings == []  # the rebuilt index passes the check


@pytest.mark.parametrize(
    "case",
    ["truncated to nothing", "emptied of rows", "deleted"],
)
def test_an_index_that_lost_rows_gets_them_back_from_the_folders(tmp_path, case):
    root = tmp_path / "jobs"
    jobs = populate(root)
    db = root / "jobs.sqlite"
    if case == "truncated to nothing":
        os.truncate(db, 0)
    elif case == "emptied of rows":
        sql(db, "DELETE FROM jobs")
    else:
        db.unlink()

    store = JobStore(root)
    ids = ", ".join(sorted(j.id for j in jobs))
    assert store.warnings == [
        f"the job index {db} did not list 5 job folder(s) found on disk (it was new, emptied or "
        f"truncated); they were added back from their folders: {ids}"
    ]
    assert store.list() == jobs
    assert not [p for p in root.iterdir() if p.name.startswith("jobs.sqlite.damaged")]


def test_a_repaired_store_runs_its_queued_job_and_takes_new_ones(tmp_path):
    root = tmp_path / "jobs"
    jobs = populate(root)
    scribble(root / "jobs.sqlite", 0, 100)
    m = JobManager(root)  # starts the queued job on the rebuilt index
    assert len(m.store.warnings) == 1 and "was damaged" in m.store.warnings[0]
    assert m.wait(jobs[0].id, timeout=30).state == SUCCEEDED
    new = m.wait(m.submit("sleep", {"steps": 1, "seconds": 0.0}).id, timeout=30)
    assert new.state == SUCCEEDED and [j.id for j in m.list()] == [new.id, *(j.id for j in jobs)]


def test_folders_from_before_job_json_are_read_from_their_config_and_log(tmp_path):
    """Folders written before job.json existed: kind and runner from the log's queued line, the
    state from its last end line; one the log does not settle is listed failed, saying why."""
    root = tmp_path / "jobs"
    done = root / "20260101-120000-aaaaaa"
    unsettled = root / "20260101-120500-bbbbbb"
    for folder in (done, unsettled):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"steps": 2}\n')
    (done / "log.txt").write_text(
        "[stvla-jobs 2026-01-01 12:00:00 UTC] job 20260101-120000-aaaaaa (sleep) queued for the local runner\n"
        "[stvla-jobs 2026-01-01 12:00:05 UTC] job succeeded\n"
    )
    (done / "result.json").write_text('{"steps": 2}\n')
    (unsettled / "log.txt").write_text(
        "[stvla-jobs 2026-01-01 12:05:00 UTC] job 20260101-120500-bbbbbb (finetune) queued for the ray runner\n"
    )
    store = JobStore(root)
    assert store.warnings == [
        f"the job index {root / 'jobs.sqlite'} did not list 2 job folder(s) found on disk (it was new, "
        "emptied or truncated); they were added back from their folders: 20260101-120000-aaaaaa, "
        "20260101-120500-bbbbbb; 2 folder(s) had no readable job.json and were read from config.json "
        "and log.txt (20260101-120000-aaaaaa, 20260101-120500-bbbbbb)"
    ]
    a, b = store.get(done.name), store.get(unsettled.name)
    assert (a.kind, a.runner, a.state, a.config, a.progress) == (
        "sleep",
        "local",
        SUCCEEDED,
        {"steps": 2},
        1.0,
    )
    assert store.read_result(a.id) == {"steps": 2} and a.created_at == 1767268800.0
    assert (b.kind, b.runner, b.state) == ("finetune", "ray", FAILED)
    assert b.error == (
        "state unknown: the job index was rebuilt and this folder's log does not say how the job ended"
    )
    assert json.loads((done / "job.json").read_text())["state"] == SUCCEEDED  # written for next time


def test_a_damaged_job_json_falls_back_to_the_log_and_says_so(tmp_path):
    root = tmp_path / "jobs"
    jobs = populate(root)
    (jobs[4].dir / "job.json").write_text("{half")
    (root / "jobs.sqlite").unlink()
    store = JobStore(root)
    assert store.warnings[0].endswith(
        f"; 1 folder(s) had no readable job.json and were read from config.json and log.txt ({jobs[4].id})"
    )
    job = store.get(jobs[4].id)
    assert (job.state, job.kind, job.config) == (SUCCEEDED, "sleep", jobs[4].config)
    assert store.read_result(job.id) == {"steps": 2, "message": "first"}


def test_a_job_running_while_its_index_is_deleted_finishes_in_the_new_index(tmp_path):
    root = tmp_path / "jobs"
    jobs = populate(root)
    m = JobManager(root)
    m.wait(jobs[0].id, timeout=30)
    job = m.submit("sleep", {"steps": 30, "seconds": 0.1})
    wait_progress(m.store, job.id)
    for name in ("jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm"):
        (root / name).unlink(missing_ok=True)  # lost under the running worker and the manager
    done = m.wait(job.id, timeout=30)
    assert done.state == SUCCEEDED and m.result(job.id) == {"steps": 30, "message": "sleeping"}
    assert [j.id for j in JobStore(root).list()] == [job.id, *(j.id for j in jobs)]


# -- newer schema -----------------------------------------------------------------------------
def newer(root: Path) -> tuple[str, bytes]:
    """A store whose index a future app (schema 2, version 0.9.0) wrote; returns the refusal
    message and the file's bytes."""
    populate(root)
    db = root / "jobs.sqlite"
    sql(db, "INSERT OR REPLACE INTO meta (key, value) VALUES ('app_version', '0.9.0')")
    sql(db, "PRAGMA user_version = 2")
    message = (
        f"the job store's index {db} has schema version 2, written by ST-VLA Studio 0.9.0; this ST-VLA "
        "Studio 0.1.0 reads schema version 1 and leaves the file as it is. Use that version of the app "
        "for these jobs, or another job folder"
    )
    return message, db.read_bytes()


def test_an_index_of_a_newer_schema_is_refused_and_left_untouched(tmp_path):
    root = tmp_path / "jobs"
    message, before = newer(root)
    with pytest.raises(JobStoreVersionError) as e:
        JobStore(root)
    assert str(e.value) == message
    assert (root / "jobs.sqlite").read_bytes() == before
    assert sorted(p.name for p in root.iterdir() if not p.name[0].isdigit()) == [".jobs.lock", "jobs.sqlite"]
    cli = subprocess.run(
        [sys.executable, "-m", "stvla_core.jobs", "--store", str(root), "list"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert (cli.returncode, cli.stdout, cli.stderr) == (2, "", f"error: {message}\n")


# -- the app ------------------------------------------------------------------------------------
@pytest.fixture
def app_ctx(tmp_path, monkeypatch):
    """A real AppContext on one small bundled episode; its job store comes from STVLA_JOBS_DIR."""
    from app import AppContext, AppSettings

    episodes = tmp_path / "episodes"
    episodes.mkdir()
    save_episode(translating_episode(t=6, h=48, w=64, name="right"), episodes / "right.npz")
    monkeypatch.setenv("STVLA_JOBS_DIR", str(tmp_path / "jobs"))
    ctx = AppContext.create(AppSettings(episodes_dir=str(episodes)))
    yield ctx
    if getattr(ctx, "jobs", None) is not None:
        ctx.jobs.stop()
        for job in ctx.jobs.list(states=(QUEUED, RUNNING)):  # the queued job the app started
            ctx.jobs.wait(job.id, timeout=30)
    ctx.close()


def component(demo, elem_id: str):
    [found] = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    return found


def test_the_app_starts_on_a_damaged_index_and_its_jobs_tab_shows_the_warning(app_ctx, tmp_path):
    from app import Inspector, build_app

    root = tmp_path / "jobs"
    jobs = populate(root)
    problem, _ = damage(root, jobs, "pages scribbled")
    demo = build_app(app_ctx)
    notice = component(demo, "job-store-notice").value
    assert "The job store needed repair when the app started; no job folder was lost" in notice
    assert f"({problem}); it was moved aside to jobs.sqlite.damaged-" in notice
    assert set(component(demo, "jobs-table").value["data"][i][0] for i in range(5)) == {j.id for j in jobs}
    out = Inspector(app_ctx).select_episode("bundled:right.npz", *CONTROLS)
    assert out[1] == "" and "frame 0" in out[2]


def test_the_app_starts_on_a_newer_index_with_jobs_off_and_the_inspector_on(app_ctx, tmp_path):
    from app import Inspector, build_app

    message, before = newer(tmp_path / "jobs")
    demo = build_app(app_ctx)
    unavailable = component(demo, "jobs-unavailable").value
    assert "Jobs are unavailable: " in unavailable and "written by ST-VLA Studio 0.9.0" in unavailable
    assert f"(job folder {tmp_path / 'jobs'}, set by STVLA_JOBS_DIR)" in unavailable
    assert not [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "jobs-table"]
    out = Inspector(app_ctx).select_episode("bundled:right.npz", *CONTROLS)
    assert out[1] == "" and "frame 0" in out[2] and out[0].maximum == 5
    assert (tmp_path / "jobs" / "jobs.sqlite").read_bytes() == before


@pytest.mark.slow
def test_python_app_py_serves_on_damaged_and_on_newer_job_stores(tmp_path):
    """The real app process: it serves the page and the Inspector's API on both stores."""
    from app_server import running_app
    from gradio_client import Client

    damaged, future = tmp_path / "damaged", tmp_path / "future"
    jobs = populate(damaged)
    problem, _ = damage(damaged, jobs, "header scribbled")
    message, _ = newer(future)
    for root, expected in ((damaged, f"was damaged ({problem})"), (future, "written by ST-VLA Studio 0.9.0")):
        with running_app(jobs_dir=root) as url:
            config = urllib.request.urlopen(url + "config", timeout=30).read().decode()
            assert expected in config
            client = Client(url, verbose=False)
            out = client.predict("bundled:maniskill_pick.npz", 0, *CONTROLS, api_name="/render")
            assert out[0] == "" and "frame 0" in out[1]
            client.close()


# -- cancel -----------------------------------------------------------------------------------
def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stvla_core.jobs", "--store", str(root), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )


def test_cancel_from_the_command_line_kills_a_job_deaf_to_sigterm_after_the_command_exited(tmp_path):
    root = tmp_path / "jobs"
    config = json.dumps({**LONG, "ignore_sigterm": True})
    job_id = cli(root, "submit", "sleep", "--config", config).stdout.strip()
    running = wait_progress(JobStore(root), job_id)
    out = cli(root, "cancel", job_id, "--grace-s", "0.5", "--no-wait")
    assert (out.returncode, out.stdout) == (0, "running (cancelling: the worker stops it)\n")
    # No manager runs from here on: the worker's own watcher ends the job and records it.
    store = JobStore(root)
    job = wait_until(lambda: (j := store.get(job_id)).done and j, timeout=20, what="the cancel")
    assert (job.state, job.exit_code) == (CANCELLED, -9)
    assert job.error == "cancelled by the user; the job ignored SIGTERM for 0.5 s and was killed with SIGKILL"
    wait_until(lambda: not process_alive(running.pid, running.pid_start), what="the worker to end")
    log = store.read_log(job_id)
    lines = [
        "cancel requested (SIGTERM, then SIGKILL after 0.5 s)",
        f"sending SIGTERM to the job (pid {running.pid})",
        "no exit 0.5 s after SIGTERM; sending SIGKILL",
        f"job cancelled: {job.error}",
    ]
    assert [log.index(line) for line in lines] == sorted(log.index(line) for line in lines)
    assert "step 100 of 100" not in log and not (job.dir / "result.json").exists()


def test_cancel_from_the_command_line_waits_and_reports_a_sigterm_stop(tmp_path):
    root = tmp_path / "jobs"
    job_id = cli(root, "submit", "sleep", "--config", json.dumps(LONG)).stdout.strip()
    wait_progress(JobStore(root), job_id)
    out = cli(root, "cancel", job_id)
    # the worker's watcher or the manager's backstop may word the end ("; worker ... ended")
    assert out.returncode == 0 and out.stdout.startswith("cancelled\ncancelled by the user"), out.stdout
    job = JobStore(root).get(job_id)
    assert (job.state, job.exit_code) == (CANCELLED, 143)
    assert "sending SIGKILL" not in JobStore(root).read_log(job_id)


def test_a_worker_too_stuck_to_act_is_killed_by_the_manager(tmp_path):
    """A stopped worker (as one holding the GIL in native code) cannot run its watcher; the
    manager sends SIGKILL once the grace period and the backstop have passed."""
    m = JobManager(tmp_path / "jobs", runner_options={"local": {"grace_s": 0.3, "backstop_s": 1.0}})
    job = m.submit("sleep", LONG)
    running = wait_progress(m.store, job.id)
    os.kill(running.pid, signal.SIGSTOP)
    m.cancel(job.id)
    job = m.wait(job.id, timeout=20)
    assert (job.state, job.exit_code) == (CANCELLED, -9)
    assert job.error == f"cancelled by the user; worker process (pid {running.pid}) killed by SIGKILL"
    assert re.search(
        rf"the worker has not stopped \d+ s after the cancel request; the job manager \(pid {os.getpid()}\) "
        "sends SIGKILL",
        m.log(job.id),
    )
    assert "sending SIGTERM" not in m.log(job.id)  # its watcher never ran


def test_a_cancel_between_claim_and_start_ends_the_job_before_it_runs(tmp_path):
    store = JobStore(tmp_path / "jobs")
    job = store.create("sleep", {"steps": 1, "seconds": 0.0})
    assert store.claim(job.id)
    store.request_cancel(job.id, grace_s=5.0)
    worker = subprocess.run(
        [sys.executable, "-m", "stvla_core.jobs.worker", job.id, "--store", str(store.root)],
        env=ENV,
        capture_output=True,
        timeout=120,
    )
    job = store.get(job.id)
    assert (worker.returncode, job.state, job.error) == (
        0,
        CANCELLED,
        "cancelled by the user before it started",
    )
    assert not (job.dir / "steps.txt").exists()


def test_a_sigterm_from_outside_is_recorded_as_such(tmp_path):
    m = JobManager(tmp_path / "jobs")
    job = m.submit("sleep", LONG)
    running = wait_progress(m.store, job.id)
    os.killpg(running.pid, signal.SIGTERM)
    job = m.wait(job.id, timeout=20)
    assert (job.state, job.exit_code) == (CANCELLED, 143)
    assert job.error == "stopped by a SIGTERM from outside the job system"


def test_a_cancel_raised_inside_a_store_write_still_records_the_job_cancelled(tmp_path):
    """SIGTERM raises Cancelled wherever the job's main thread is, also between a transaction's
    BEGIN and its body (a progress write). The transaction left open must not stop the worker
    from recording the cancel (before the fix it died on "cannot start a transaction within a
    transaction" and the job ended without its exit code)."""
    store = JobStore(tmp_path / "jobs")
    job = store.create("sleep", {"steps": 1, "seconds": 0.0})
    assert store.claim(job.id)
    con = store._con()
    con.execute("BEGIN IMMEDIATE")  # what an interrupted `with store._tx()` leaves behind
    assert con.in_transaction
    assert store.finish(job.id, CANCELLED, error="cancelled by the user", exit_code=143)
    job = JobStore(store.root).get(job.id)  # a second connection sees it committed
    assert (job.state, job.exit_code, job.error) == (CANCELLED, 143, "cancelled by the user")
