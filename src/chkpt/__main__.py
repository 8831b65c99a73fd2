"""`python -m chkpt`: the `chkpt` command (cli.py)."""

from .cli import main

raise SystemExit(main())
