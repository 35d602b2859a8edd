#!/usr/bin/env python3
"""docs.<name>: runs the command blocks of one Markdown document as written.

usage: run_doc_blocks.py --source SRC --build BUILD [--bin NAME=PATH ...]
                         [--doc-timeout S] [--list] DOC.md

Every ```sh block of DOC (docblocks.py has the rule and the markers) runs,
in document order, in ONE bash session (a nestord started with `&` in one
block serves the next), each block under `set -e` and its own time limit.
The session is what a user has after the README's build:

- a fresh directory that looks like the checkout: a symlink to every
  top-level entry of SRC, and `build` -> BUILD;
- the binaries on PATH under their installed names (--bin NAME=PATH);
- as root, in private mount and pid namespaces (unshare): /run is an
  empty tmpfs and /var/lib and /srv are empty directories, so documented
  paths (/run/nestor, /var/lib/nestor/pool0.img, /srv/vm0.img) work
  exactly as written without touching the host; a Debian host's `kvm`
  group is provided if the machine lacks it. The whole namespace dies
  with the test: nothing a block starts outlives it.

Exit status: 0 every block ran (or DOC has none), 1 a block failed or a
block cannot be classified, 77 cannot run here (not root; ctest: skipped).
Threading: one thread. Everything is bounded: per block (marker timeout,
default 60 s) and per document (--doc-timeout).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import docblocks  # noqa: E402
import session  # noqa: E402

NS_ENV = "NESTOR_DOCTEST_IN_NS"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--source", required=True, help="the source tree (the checkout)")
    p.add_argument("--build", required=True, help="the build tree, reachable as ./build")
    p.add_argument("--bin", action="append", default=[], metavar="NAME=PATH", help="a binary on PATH as NAME")
    p.add_argument("--doc-timeout", type=int, default=170, help="seconds for the whole document")
    p.add_argument("--list", action="store_true", help="classify and list the blocks, run nothing")
    p.add_argument("doc")
    return p.parse_args(argv)


def enter_namespaces(argv):
    """Re-executes this script in new mount and pid namespaces (never returns)."""
    if os.geteuid() != 0:
        print("SKIP: needs root for private mount and pid namespaces (/run/nestor, /var/lib/nestor, /srv)")
        sys.exit(77)
    if shutil.which("unshare") is None:
        print("SKIP: needs unshare (util-linux)")
        sys.exit(77)
    env = dict(os.environ, **{NS_ENV: "1"})
    cmd = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private"]
    os.execvpe(cmd[0], cmd + [sys.executable, os.path.abspath(__file__)] + argv, env)


def mount(*args):
    subprocess.run(["mount", *args], check=True)


def private_host(scratch):
    """Inside the mount namespace: empty /run, /var/lib, /srv; a kvm group."""
    mount("-t", "tmpfs", "-o", "mode=0755", "doc-test-run", "/run")
    for path in ("/var/lib", "/srv"):
        backing = os.path.join(scratch, "host" + path.replace("/", "-"))
        os.makedirs(backing)
        os.makedirs(path, exist_ok=True)
        mount("--bind", backing, path)
    if subprocess.run(["getent", "group", "kvm"], stdout=subprocess.DEVNULL).returncode != 0:
        group = os.path.join(scratch, "group")
        shutil.copy("/etc/group", group)
        with open(group, "a") as f:
            f.write(f"kvm:x:{free_gid()}:\n")
        mount("--bind", group, "/etc/group")


def free_gid():
    used = {int(line.split(":")[2]) for line in open("/etc/group") if line.count(":") >= 3}
    return next(g for g in range(990, 100, -1) if g not in used)


def checkout_dir(scratch, source, build):
    """A fresh directory shaped like the checkout after the README's build."""
    work = os.path.join(scratch, "work")
    os.makedirs(work)
    for name in sorted(os.listdir(source)):
        if name == ".git" or name.startswith("build"):
            continue
        os.symlink(os.path.join(source, name), os.path.join(work, name))
    os.symlink(os.path.abspath(build), os.path.join(work, "build"))
    return work


def bin_dir(scratch, bins):
    path = os.path.join(scratch, "bin")
    os.makedirs(path)
    for spec in bins:
        name, _, target = spec.partition("=")
        os.symlink(os.path.abspath(target), os.path.join(path, name))
    return path


def session_env(bindir, home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NESTOR_", "CEPH_"))}
    env.update(PATH=bindir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME=home, LC_ALL="C")
    return env


def list_blocks(blocks):
    for b in blocks:
        state = "run" if b.runs else (f"skip: {b.skip}" if b.skip else f"{b.lang or 'bare'}, not run")
        print(f"{b.where()}: {state}")


def main(argv):
    args = parse_args(argv)
    with open(args.doc) as f:
        rel = os.path.relpath(args.doc, args.source)
        blocks, errors = docblocks.Parse(rel, f.read())
    for e in errors:
        print(f"FAIL: {e}")
    if args.list or errors:
        list_blocks(blocks)
        return 1 if errors else 0
    runnable = [b for b in blocks if b.runs]
    if not runnable:
        print(f"{rel}: no block runs ({len(blocks)} blocks: none is an unskipped sh block)")
        return 0
    if os.environ.get(NS_ENV) != "1":
        enter_namespaces(argv)
    scratch = tempfile.mkdtemp(prefix="doc-test-")
    try:
        private_host(scratch)
        work = checkout_dir(scratch, args.source, args.build)
        home = os.path.join(scratch, "home")
        os.makedirs(home)
        env = session_env(bin_dir(scratch, args.bin), home)
        return session.RunDocument(blocks, work, env, os.path.join(scratch, "blocks"), args.doc_timeout)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
