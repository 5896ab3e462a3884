"""`python -m transfer`: check the command line, let Hydra run the command, print user errors as one line (exit 2).

Kept free of heavy imports so that mistakes are reported in well under the 5 seconds torch + timm take to load.
`TRANSFER_DEBUG=1` prints the whole chain of causes behind a one-line error.
"""

from __future__ import annotations

import errno
import gc
import os
import re
import shlex
import signal
import sys
import traceback

from omegaconf import DictConfig

from transfer.errors import UserError

DEBUG_ENV = "TRANSFER_DEBUG"


def report_user_error(e: UserError) -> None:
    """`error: <one line>` on stderr; with TRANSFER_DEBUG=1 first every exception in the chain, causes included."""
    if os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on"):
        chain: list[BaseException] = []
        cause: BaseException | None = e
        while cause is not None and cause not in chain:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__  # `from None` hides a cause from users, not from debugging
        for exc in reversed(chain):
            print("".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=False)), file=sys.stderr)
    print(f"error: {e}", file=sys.stderr)


DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # the disk under the run dir cannot take more bytes


def disk_error(e: OSError) -> UserError:
    """A full (or read-only) disk met anywhere in a run (a Lightning checkpoint, a plot, a log) as one line naming the
    file and the fix. Every file a later run trusts is written whole or not at all (transfer.atomic, model dirs, the
    run records), so what the failed run left is either complete or ignored."""
    where = e.filename or "the run dir"
    return UserError(
        f"{where}: cannot write ({e.strerror or os.strerror(e.errno or 0)}); free space on that disk, or run where "
        "there is room: hydra.run.dir=<folder> (and features.cache_dir=<folder> for the feature cache)."
    )


_INTERRUPTED: list[bool] = []  # set by the SIGINT handler: Lightning turns a Ctrl-C into sys.exit(1)


def _on_sigint(signum, frame) -> None:
    _INTERRUPTED.append(True)
    raise KeyboardInterrupt


def report_interrupt() -> None:
    """One line on stderr: what the run dir holds that is complete, and the command that continues it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this line short
    try:
        from transfer.app.dispatch import output_dir
        from transfer.studies.resume import completed_runs

        out = output_dir()
        runs = completed_runs(out)
    except Exception:  # noqa: BLE001  -- the message must come out whatever state the run is in
        out, runs = None, []
    kept = f"{len(runs)} finished run(s) ({', '.join(runs)})" if runs else "no finished run"
    where = shlex.quote(str(out)) if out is not None else "<run dir>"
    print(
        f"interrupted: kept {kept} in {where}; rerun with resume=true hydra.run.dir={where} to continue",
        file=sys.stderr,
    )


def _task(cfg: DictConfig) -> float | None:
    """One Hydra job; returns the command's value (fit: the selection accuracy), the objective of a search sweep."""
    from transfer.app.dispatch import dispatch

    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        return dispatch(cfg)
    except UserError as e:
        report_user_error(e)
        sys.exit(2)
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        report_user_error(disk_error(e))
        sys.exit(2)
    except KeyboardInterrupt:
        report_interrupt()
        sys.exit(130)
    except SystemExit:
        if _INTERRUPTED:  # Lightning caught the Ctrl-C, tore down, and exited 1
            report_interrupt()
            sys.exit(130)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def expand_home(argv: list[str]) -> list[str]:
    """`data.root=~/cats` -> the home path: Hydra's override grammar cannot lex an unquoted `~`, and not every
    shell expands a tilde after `=` in an argument."""
    return [re.sub(r"^([\w.+]+)=~(?=/|$)", lambda m: f"{m.group(1)}={os.path.expanduser('~')}", a) for a in argv]


def main() -> None:
    import hydra

    from transfer.app.compose import precheck
    from transfer.app.config_source import conf_dir, register_recipe_source
    from transfer.app.schema import register_schema

    args = expand_home(sys.argv[1:])
    if any(a in ("-h", "--help") for a in args):
        from transfer.app.help import print_help

        try:
            print_help()
        except BrokenPipeError:  # `--help | head`: the reader left; nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    try:
        if not any(a in ("--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion") for a in args):
            precheck(args)
    except UserError as e:
        report_user_error(e)
        sys.exit(2)
    sys.argv = [sys.argv[0], *args]
    register_recipe_source()
    register_schema()
    try:
        hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(_task)()
    finally:
        # every file is written and closed by now: the interpreter's last collection would walk torch's and
        # Lightning's whole heap for nothing (~1 s of the digits study); frozen objects are skipped
        gc.freeze()


if __name__ == "__main__":
    main()
