"""One bash session that runs a document's blocks in order (docs.* tests).

Purpose: RunDocument() feeds bash, through a pipe it reads its script
from, one block at a time: `set -e`, `source BLOCK`, `set +e`, then a
sentinel line on a status pipe. State carries from block to block (the
working directory, variables, background jobs), as in the terminal of a
user who pastes the blocks one after the other. A block fails when a
command in it fails (bash exits), when it outlives its time limit, or when
one of its `expect` commands does not succeed within EXPECT_S (or the
block's shorter limit). The session
runs in its own process group; at the end the group gets SIGTERM, then
SIGKILL after STOP_S, and every child is reaped.

Threading: one thread (may run as pid 1 of a pid namespace: it reaps
every child it inherits). Errors: RunDocument returns the exit status
(0 passed, 1 failed) and prints why.
"""

import os
import select
import signal
import subprocess
import time

EXPECT_S = 20
STOP_S = 10


def _reap():
    """Reaps every exited child (orphans reparent to us as pid 1)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _group_alive(pgid):
    _reap()
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _stop_group(pgid):
    """SIGTERM to the session's process group, SIGKILL after STOP_S; True if it needed SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(pgid):
            return False
        os.killpg(pgid, sig)
        deadline = time.monotonic() + STOP_S
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)
    return True


class Session:
    """bash reading its script from a pipe; sentinels come back on another."""

    def __init__(self, cwd, env, block_dir):
        self.block_dir = block_dir
        os.makedirs(block_dir)
        script_r, self.script_w = os.pipe()
        self.status_r, status_w = os.pipe()
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", f"/dev/fd/{script_r}"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=(script_r, status_w),
            start_new_session=True,
        )
        os.close(script_r)
        os.close(status_w)
        # bash reads its script from its own descriptor (255): close the
        # inherited ones, and keep the status pipe away from the blocks'
        # commands (a nestord holding it open would be harmless, but
        # nothing of the runner belongs in a user's session).
        self.status_fd = 254
        self._send(f"exec {script_r}<&- {self.status_fd}>&{status_w} {status_w}>&-\n")
        self.buffer = b""

    def _send(self, text):
        os.write(self.script_w, text.encode())

    def run(self, index, block):
        """'' if the block ran to its end within its time limit, else why not."""
        path = os.path.join(self.block_dir, f"block-{index}.sh")
        with open(path, "w") as f:
            f.write(block.body)
        self._send(f"set -e\nsource {path} {self.status_fd}>&-\nset +e\necho done-{index} >&{self.status_fd}\n")
        return self._wait_for(f"done-{index}", block.timeout_s)

    def _wait_for(self, token, timeout_s):
        deadline = time.monotonic() + timeout_s
        while token.encode() + b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"still running after {timeout_s} s (the block's limit)"
            ready, _, _ = select.select([self.status_r], [], [], min(left, 0.2))
            if ready:
                data = os.read(self.status_r, 4096)
                if not data:
                    return f"bash exited with status {self.proc.wait()} (a command failed under set -e)"
                self.buffer += data
            elif self.proc.poll() is not None:
                return f"bash exited with status {self.proc.returncode} (a command failed under set -e)"
        return ""

    def expect(self, command, limit_s, cwd, env):
        """'' if `command` succeeds within limit_s (retried every 0.1 s), else its last output."""
        deadline = time.monotonic() + limit_s
        while True:
            r = subprocess.run(
                ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=limit_s
            )
            if r.returncode == 0:
                return ""
            if time.monotonic() >= deadline:
                return f"exit {r.returncode}: {(r.stdout + r.stderr).strip()[-2000:]}"
            time.sleep(0.1)

    def close(self):
        """Ends the session; True if something in it needed SIGKILL."""
        try:
            self._send("exit 0\n")
        except BrokenPipeError:
            pass
        os.close(self.script_w)
        try:
            self.proc.wait(timeout=2)  # an idle bash exits at once; a busy one is stopped below
        except subprocess.TimeoutExpired:
            pass
        killed = _stop_group(self.proc.pid)
        os.close(self.status_r)
        return killed


def _show(block, index, total):
    print(f"\n=== {block.where()} (block {index}/{total}, limit {block.timeout_s} s)", flush=True)
    for line in block.body.rstrip("\n").split("\n"):
        print(f"  $ {line}", flush=True)


def _report_skips(blocks):
    for b in blocks:
        if b.skip:
            print(f"--- {b.where()}: skipped: {b.skip}")


def RunDocument(blocks, cwd, env, block_dir, doc_timeout_s):
    """Runs the runnable blocks in order; 0 if all passed, else 1."""
    _report_skips(blocks)
    runnable = [b for b in blocks if b.runs]
    start = time.monotonic()
    s = Session(cwd, env, block_dir)
    failure = ""
    ran = 0
    try:
        for i, block in enumerate(runnable, 1):
            ran = i
            _show(block, i, len(runnable))
            t0 = time.monotonic()
            why = s.run(i, block)
            for command in block.expects if not why else []:
                why = s.expect(command, min(EXPECT_S, block.timeout_s), cwd, env)
                if why:
                    why = f"expect `{command}` failed: {why}"
                    break
            result = "FAILED: " + why if why else "ok"
            print(f"--- {block.where()}: {result} ({time.monotonic() - t0:.1f} s)", flush=True)
            if why:
                failure = f"{block.where()}: {why}"
                break
            if time.monotonic() - start > doc_timeout_s:
                failure = f"the document took more than {doc_timeout_s} s"
                break
    finally:
        killed = s.close()
    if killed:
        print("note: a process the blocks started ignored SIGTERM for 10 s and was killed")
    print(f"\n{'FAIL: ' + failure if failure else 'PASS'}: {ran} of {len(runnable)} blocks run, "
          f"{sum(1 for b in blocks if b.skip)} skipped, {time.monotonic() - start:.1f} s", flush=True)
    return 1 if failure else 0
