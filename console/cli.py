"""``lookout console``: serve the web console; ``lookout console adduser|users``: manage its accounts."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path

from lookout.console.config import ConsoleConfig, load_config
from lookout.errors import InputError

CONFIG_ENV = "LOOKOUT_CONSOLE_CONFIG"
ROLES = ("reviewer", "gallery_admin", "admin")


def _config(args: argparse.Namespace) -> ConsoleConfig:
    path = args.config or os.environ.get(CONFIG_ENV)
    return load_config(Path(path) if path else None, args.set)


def register(commands: argparse._SubParsersAction) -> None:
    console = commands.add_parser(
        "console",
        help="the web console: review alerts, search by photo, manage galleries, watch the fleet",
        description="Serves the console (127.0.0.1:8080 unless configured; TLS with tls.cert_file/key_file). "
        "Accounts: `lookout console adduser NAME --role ROLE`.",
    )
    _common(console, top=True)
    console.add_argument("--check-config", action="store_true", help="validate the config, print it and exit")
    console.set_defaults(func=cmd_console)
    actions = console.add_subparsers(dest="console_command", metavar="ACTION")
    add = actions.add_parser("adduser", help="create an account (the password is asked for, never an argument)")
    _common(add)
    add.add_argument("username", metavar="NAME")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable (scripts)")
    add.add_argument("--replace", action="store_true", help="set a new password and role for an existing account")
    add.set_defaults(func=cmd_adduser)
    users = actions.add_parser("users", help="list the accounts")
    _common(users)
    users.set_defaults(func=cmd_users)


def _common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """--config and --set, on `console` and again on its actions (an action's defaults never hide the top's)."""
    unset = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config", metavar="FILE", default=unset, help=f"console YAML config (default: ${CONFIG_ENV}, else defaults)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[] if top else argparse.SUPPRESS,
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable)",
    )


def cmd_console(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.check_config:
        print(json.dumps(config.model_dump(mode="json"), indent=2))
        return 0
    from lookout.console.server import ConsoleServer  # the console extra (uvicorn, starlette): only when serving

    server = ConsoleServer(config)
    print(f"Lookout console on {server.url}  (Ctrl-C stops)", flush=True)
    server.run()
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise InputError(f"environment variable {args.password_env}", "is not set or empty")
        return value
    first = getpass.getpass(f"password for {args.username}: ")
    if getpass.getpass("again: ") != first:
        raise InputError("password", "the two entries differ")
    return first


def cmd_adduser(args: argparse.Namespace) -> int:
    from lookout.console.accounts import Accounts  # the console extra (argon2): only for accounts

    config = _config(args)
    accounts = Accounts(config.database, config.sessions, config.login)
    try:
        user = accounts.add_user(args.username, args.role, _password(args), replace=args.replace)
    finally:
        accounts.close()
    print(f"account {user.username} ({user.role}) saved in {config.database}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from lookout.console.accounts import Accounts  # the console extra (argon2): only for accounts

    config = _config(args)
    accounts = Accounts(config.database, config.sessions, config.login)
    try:
        for user, _created, disabled in accounts.users():
            print(f"{user.username:24s} {user.role:14s} {'disabled' if disabled else 'active'}")
    finally:
        accounts.close()
    return 0
