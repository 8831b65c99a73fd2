"""The `chkpt` command (also `python -m chkpt`): what a store holds, one checkpoint's record and value, removing
checkpoints, why a run would recompute (explain), accepting a harmless edit, and a pipeline's graph, from a
terminal and without running any stage.

Exit codes: 0 done, 1 an error (one line on stderr that says what to do; the traceback too with `--debug`), 2 a
usage error (argparse's). A command that deletes asks first when stdin is a terminal, unless `--yes`; without a
terminal it needs `--yes` (or `--dry-run`), so a script never deletes by accident or hangs on a prompt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import ChkptError
from .records import size_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, TextIO

    from .catalog import Collected, Store
    from .listing import Checkpoint
    from .pipeline import Pipeline

PREVIEW_LINES = 20
"""How many lines of a value `chkpt show` prints, unless --lines says otherwise."""
_PREVIEW_BYTES = 64 * 1024  # how much of a value file a preview reads


class UsageError(ChkptError):
    """A command given something it cannot use (exit code 1, as for any error chkpt names)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with `argv` (default: sys.argv[1:]); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.command(args, sys.stdout))
    except (ChkptError, OSError) as exc:
        if args.debug:
            raise
        message = str(exc) if isinstance(exc, ChkptError) else f"{exc.strerror or exc}: {exc.filename or ''}"
        print(f"chkpt {args.name}: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"chkpt {args.name}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chkpt", description="See and tidy chkpt's checkpoints, and draw pipelines. No stage is run."
    )
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"chkpt {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, help: str, run: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=run, name=name)
        sub.add_argument("--debug", action="store_true", help="show the traceback of an error")
        return sub

    def store_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--dir",
            help="the store: a folder or an fsspec URL (default: $CHKPT_DIR, else .chkpt), as Config(dir=...)",
        )
        sub.add_argument(
            "--storage-options",
            type=_json_object,
            metavar="JSON",
            help='for a URL: the fsspec options as a JSON object, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'',
        )

    def deleting(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--dry-run", action="store_true", help="remove nothing; print what would be removed")
        sub.add_argument("--yes", "-y", action="store_true", help="do not ask before removing")

    ls = command("ls", "List the store: a row per stage, or with --stage a row per checkpoint.", _ls)
    store_options(ls)
    ls.add_argument("--stage", help="list this stage's checkpoints, newest first")

    show = command("show", "Print a checkpoint's record and a preview of its value (nothing is run).", _show)
    store_options(show)
    show.add_argument("stage")
    show.add_argument("key", nargs="?", help="a key or the start of one (default: the stage's newest)")
    show.add_argument("--lines", type=int, default=PREVIEW_LINES, help=f"lines of the value (default {PREVIEW_LINES})")

    rm = command("rm", "Remove a stage's checkpoints, or one of them.", _rm)
    store_options(rm)
    rm.add_argument("stage")
    rm.add_argument("key", nargs="?", help="a key or the start of one (default: all of the stage's)")
    deleting(rm)

    gc = command("gc", "Remove what is not wanted any more (see chkpt.Store.gc); by default all but the newest.", _gc)
    store_options(gc)
    gc.add_argument("--keep-last", type=int, help="keep this many newest checkpoints of each stage")
    gc.add_argument("--older-than", help="remove only checkpoints older than this: 45s, 90m, 12h, 30d, 2w")
    gc.add_argument("--stage", action="append", dest="stages", metavar="STAGE", help="only this stage (repeatable)")
    gc.add_argument("--max-bytes", type=_size, help="then remove the least recently used until this fits: 50G, 200M")
    gc.add_argument(
        "--keep-reachable",
        action="append",
        metavar="MODULE:ATTR",
        help="keep exactly what this pipeline would load today (repeatable; module:attr or path/file.py:attr)",
    )
    deleting(gc)

    explain = command(
        "explain", "A dry run: what a run would load, compute or skip, and why (what changed). Nothing runs.", _explain
    )
    explain.add_argument("pipeline", metavar="MODULE:ATTR", help="a Pipeline: module:attr or path/file.py:attr")
    store_options(explain)
    explain.add_argument(
        "--load",
        default="all",
        help="which stages a run may load: all (default), none, or stage names joined by commas (Config(load=...))",
    )

    accept = command(
        "accept",
        "Declare an edit of STAGE harmless: store its checkpoint, and those downstream that only its key changed, "
        "under their new keys, without computing.",
        _accept,
    )
    accept.add_argument("pipeline", metavar="MODULE:ATTR", help="a Pipeline: module:attr or path/file.py:attr")
    accept.add_argument("stage", help="the stage whose edit changed nothing its results depend on")
    store_options(accept)

    graph = command("graph", "Print or draw a pipeline's graph.", _graph)
    graph.add_argument("pipeline", metavar="MODULE:ATTR", help="a Pipeline: module:attr or path/file.py:attr")
    graph.add_argument("--format", choices=("mermaid", "dot", "svg", "png"), default="mermaid")
    graph.add_argument("-o", "--output", help="write to this file (svg and png need one, or a pipe)")
    return parser


# --- commands -------------------------------------------------------------------------------------------------------


def _ls(args: argparse.Namespace, out: TextIO) -> int:
    store = _store(args)
    listed = store.checkpoints(args.stage) if args.stage else store.checkpoints()
    now = time.time()
    if args.stage and not listed:
        # the folder is there (a typo is a ConfigError), but its checkpoints are another name's: "my stage" is
        # kept in my_stage
        names = sorted({cp.stage for cp in store.checkpoints()})
        print(f"no checkpoints of stage {args.stage!r} in {store.root}; the stages there are {names}", file=out)
        return 0
    if args.stage:
        rows = [("key", "created", "age", "size", "last used", "files")]
        rows += [
            (
                cp.key,
                _when(cp.created),
                _age(now - cp.created),
                size_text(cp.bytes),
                _age(now - cp.used) + " ago",
                str(len(cp.files)),
            )
            for cp in listed
        ]
        _table(out, rows, right={3, 5})
        return 0
    if not listed:
        print(f"no checkpoints in {store.root}", file=out)
        return 0
    by_stage: dict[str, list[Checkpoint]] = {}
    for cp in listed:
        by_stage.setdefault(cp.stage, []).append(cp)
    rows = [("stage", "checkpoints", "newest", "age", "size", "codec")]
    for stage, checkpoints in by_stage.items():
        newest = checkpoints[0]
        rows.append(
            (
                stage,
                str(len(checkpoints)),
                newest.key[:12],
                _age(now - newest.created),
                size_text(sum(cp.bytes for cp in checkpoints)),
                _codec(store, newest),
            )
        )
    _table(out, rows, right={1, 4})
    print(f"{len(listed)} checkpoints, {size_text(sum(cp.bytes for cp in listed))}, in {store.root}", file=out)
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    store = _store(args)
    cp = _one(store, args.stage, args.key)
    record = store.record(cp)
    print(f"{cp.stage} {cp.key}", file=out)
    print(json.dumps(record, indent=2, sort_keys=False), file=out)
    print("files: " + ", ".join(cp.files), file=out)
    print("value:", file=out)
    for line in _preview(store, cp, record, max(args.lines, 0)):
        print("  " + line, file=out)
    return 0


def _rm(args: argparse.Namespace, out: TextIO) -> int:
    store = _store(args)
    going = [_one(store, args.stage, args.key)] if args.key else store.checkpoints(args.stage)
    if not going:
        print(f"stage '{args.stage}' has no checkpoints in {store.root}", file=out)
        return 0
    if not args.dry_run:
        _confirm(args, f"remove {_count(going)} of stage '{args.stage}' ({size_text(sum(cp.bytes for cp in going))})")
    collected = store.remove(args.stage, [cp.key for cp in going], dry_run=args.dry_run)
    _report(out, collected, args.dry_run)
    return 0


def _gc(args: argparse.Namespace, out: TextIO) -> int:
    store = _store(args)
    options: dict[str, Any] = {
        "keep_last": args.keep_last,
        "older_than": args.older_than,
        "stages": args.stages,
        "max_bytes": args.max_bytes,
        "keep_reachable": [_pipeline(reference) for reference in args.keep_reachable or ()] or None,
    }
    planned = store.gc(dry_run=True, **options)
    if args.dry_run or not (planned.removed or planned.bytes_freed):
        _report(out, planned, True)
        return 0
    _confirm(args, f"remove {_count(planned.removed)} ({size_text(planned.bytes_freed)})")
    _report(out, store.gc(**options), False)
    return 0


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    from .config import Config

    choices: dict[str, bool | list[str]] = {"all": True, "none": False}
    load = choices.get(args.load, [name.strip() for name in args.load.split(",") if name.strip()])
    config = Config(dir=_directory(args), load=load, storage_options=args.storage_options)
    print(_pipeline(args.pipeline).explain(config), file=out)
    return 0


def _accept(args: argparse.Namespace, out: TextIO) -> int:
    from .config import Config

    config = Config(dir=_directory(args), load=True, storage_options=args.storage_options)
    accepted = _pipeline(args.pipeline).accept(args.stage, config)
    for item in accepted:
        print(f"accepted {item.stage} {item.old[:12]} -> {item.new[:12]}", file=out)
    if not accepted:
        print(f"nothing to accept: stage '{args.stage}' already has a checkpoint for its key", file=out)
    return 0


def _graph(args: argparse.Namespace, out: TextIO) -> int:
    from . import graph

    pipeline = _pipeline(args.pipeline)
    if args.format in ("svg", "png"):
        data = graph.render(pipeline, args.format)
        if args.output:
            with open(args.output, "wb") as file:
                file.write(data)
        elif args.format == "png" and out.isatty():
            raise UsageError("a PNG is no text for a terminal: give -o FILE, or pipe it")
        else:
            out.flush()
            sys.stdout.buffer.write(data)
        return 0
    text = graph.to_mermaid(pipeline) if args.format == "mermaid" else graph.to_dot(pipeline)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text)
    else:
        out.write(text)
    return 0


# --- helpers --------------------------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> Store:
    from .catalog import Store

    return Store(_directory(args), storage_options=args.storage_options)


def _directory(args: argparse.Namespace) -> str:
    from .config import Config

    return Config(dir=args.dir).directory()


def _one(store: Store, stage: str, key: str | None) -> Checkpoint:
    """The checkpoint of `stage` whose key is or starts with `key` (its newest when `key` is None)."""
    listed = store.checkpoints(stage)
    if not listed:
        raise UsageError(f"stage '{stage}' has no checkpoints in {store.root}")
    if key is None:
        return listed[0]
    found = [cp for cp in listed if cp.key.startswith(key.lower())]
    if not found:
        raise UsageError(f"stage '{stage}' has no checkpoint whose key starts with {key!r}; `chkpt ls --stage {stage}`")
    if len(found) > 1:
        keys = ", ".join(cp.key[:12] for cp in found[:5])
        raise UsageError(f"{key!r} starts {len(found)} keys of stage '{stage}' ({keys}...): give more of it")
    return found[0]


def _pipeline(reference: str) -> Pipeline[Any]:
    from .loading import load_pipeline

    return load_pipeline(reference)


def _codec(store: Store, cp: Checkpoint) -> str:
    try:
        return str(store.record(cp).get("codec", "?"))
    except ChkptError:
        return "? (damaged record)"


def _preview(store: Store, cp: Checkpoint, record: dict[str, Any], lines: int) -> list[str]:
    """A few lines about a checkpoint's value, read without running anything: JSON and text as they are, an
    array's shape and dtype, a table's columns; for pickle only its size, since unpickling runs code."""
    codec = record.get("codec")
    size = record.get("bytes")
    head = store._head(cp, _PREVIEW_BYTES)
    if codec in ("json", "json-lossy"):
        text = head.partition(b"\n")[2].removeprefix(b'"value": ')
        try:
            shown = json.dumps(json.loads(text.removesuffix(b"\n}\n")), indent=2).splitlines()
        except ValueError:  # more than a preview's worth: its start, as stored
            shown = text.decode("utf-8", "replace").splitlines()
        return _cut(shown, lines, size)
    if codec == "text":
        return _cut(head.decode("utf-8", "replace").splitlines(), lines, size)
    if codec == "bytes":
        return [f"{size} bytes: {head[:64]!r}{'...' if isinstance(size, int) and size > 64 else ''}"]
    if codec == "numpy":
        return [_npy_header(head)]
    if codec == "pickle":
        return [f"pickle, {size} bytes (not unpickled here: unpickling runs code; load it with a run)"]
    return [f"{codec}, {size} bytes"]


def _npy_header(head: bytes) -> str:
    """An .npy file's shape and dtype, from its header (no numpy needed)."""
    import ast

    if not head.startswith(b"\x93NUMPY") or len(head) < 10:
        return "not an .npy file"
    major = head[6]
    length_size = 2 if major == 1 else 4
    length = int.from_bytes(head[8 : 8 + length_size], "little")
    try:
        header = ast.literal_eval(head[8 + length_size : 8 + length_size + length].decode("latin1"))
    except (ValueError, SyntaxError):
        return "an .npy file whose header does not parse"
    return f"array of shape {tuple(header['shape'])}, dtype {header['descr']!r}" + (
        ", Fortran order" if header.get("fortran_order") else ""
    )


def _cut(lines: list[str], limit: int, size: object) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"... ({size} bytes in all)"]


def _confirm(args: argparse.Namespace, what: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"would {what}: pass --yes to do it (or --dry-run to see what goes), as stdin is no terminal")
    answer = input(f"{what}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("nothing removed")


def _report(out: TextIO, collected: Collected, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for cp in collected.removed:
        print(f"{verb} {cp.stage} {cp.key[:12]} ({size_text(cp.bytes)})", file=out)
    for cp in collected.skipped_locked:
        print(f"kept {cp.stage} {cp.key[:12]}: a running pipeline holds it", file=out)
    extra = f" and {collected.temporaries} left by crashed writes" if collected.temporaries else ""
    print(f"{verb} {_count(collected.removed)}{extra}: {size_text(collected.bytes_freed)}", file=out)


def _table(out: TextIO, rows: Sequence[tuple[str, ...]], right: set[int]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        print("  ".join(cells).rstrip(), file=out)


def _count(checkpoints: Sequence[object]) -> str:
    return f"{len(checkpoints)} checkpoint{'' if len(checkpoints) == 1 else 's'}"


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit}"
    return f"{int(seconds)}s"


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("a JSON object is needed, e.g. '{\"anon\": true}'")
    return value


def _size(text: str) -> int:
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    number = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = number[-1:] if number[-1:] in units else ""
    try:
        value = float(number[: len(number) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is a number of bytes, or one with K, M, G or T: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"a size is a finite number of bytes, 0 or more: {text!r}")
    return int(value * units[unit])
