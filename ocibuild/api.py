"""The Python API behind the CLI. Each verb is one function; imports are lazy so that
``--check`` never loads the registry or sandbox code.

``run_verb`` maps parsed CLI arguments onto these functions and returns the exit code.
"""

from __future__ import annotations

import argparse

from ocibuild.errors import UsageError


def run_verb(verb: str, args: argparse.Namespace) -> int:
    if verb == "build":
        if args.check:
            from ocibuild.dockerfile.check import run_check_cli

            return run_check_cli(args)
        if args.print_plan:
            from ocibuild.plan.dump import run_print_plan_cli

            return run_print_plan_cli(args)
        from ocibuild.executor.build import run_build_cli

        return run_build_cli(args)
    if verb in ("copy", "inspect", "login"):
        from ocibuild.registry import cli as registry_cli

        return int(getattr(registry_cli, f"run_{verb}")(args))
    if verb == "prune":
        from ocibuild.executor.runtime import sandbox_remover
        from ocibuild.store.gc import run_prune_cli

        with sandbox_remover() as remover:
            return run_prune_cli(args, remover=remover)
    raise UsageError(f"unknown verb {verb!r}")
