"""`python -m policy_engine.tooling`: the tooling subcommands without the rest of the CLI."""

from policy_engine.tooling.cli import main

raise SystemExit(main())
