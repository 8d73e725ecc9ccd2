"""Operator commands over the control plane's service functions (the same as the API's).

`connect` prints the provider's authorization URL; the rest run headlessly and print
JSON. A refusal prints `error: <code>: <what to do>` on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control.context import ControlContext, ControlError

if TYPE_CHECKING:
    from service.config import Settings

__all__ = ["register"]


def _settings() -> Settings:
    from service.bootstrap import settings_from_env

    return settings_from_env()


@contextmanager
def _context() -> Iterator[ControlContext]:
    from service.bootstrap import build_services

    services = build_services(_settings())
    ctx, side = ControlContext.with_kafka(services)
    try:
        yield ctx
    finally:
        side.close()
        services.close()


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _run(action: Callable[[ControlContext, argparse.Namespace], Any]
         ) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        try:
            with _context() as ctx:
                result = action(ctx, args)
        except ControlError as exc:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            return 2
        if result is not None:
            _print(result)
        return 0

    return command


def _on_off(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r}: use on or off")


def _selections(args: argparse.Namespace, with_type: bool) -> list[dict[str, Any]]:
    """`--import ID[:Type]`, `--link ID=BLUECLERK_ID[:Type]`, or `--file selections.json`."""
    selections: list[dict[str, Any]] = []
    if args.file:
        with open(args.file, encoding="utf-8") as handle:
            loaded = json.load(handle)
        selections.extend(loaded["selections"] if isinstance(loaded, dict) else loaded)
    for raw in args.imports or []:
        provider_id, _, ctype = raw.partition(":") if with_type else (raw, "", "")
        selections.append({"provider_id": provider_id, "action": "import",
                           **({"customer_type": ctype} if ctype else {})})
    for raw in args.links or []:
        provider_id, sep, target = raw.partition("=")
        if not sep or not target:
            raise ControlError("invalid_selection", f"--link {raw!r}: write PROVIDER_ID="
                               "BLUECLERK_ID", 400)
        target, _, ctype = target.partition(":") if with_type else (target, "", "")
        selections.append({"provider_id": provider_id, "action": "link", "link_to": target,
                           **({"customer_type": ctype} if ctype else {})})
    return selections


# --------------------------------------------------------------------------- actions


def _binding_file(state: str) -> Path:
    """Where `connect` keeps the browser binding of a pending authorization, readable only
    by the operator who started it, for `callback` on the same machine."""
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "blueclerk-sync" / "oauth" / hashlib.sha256(state.encode()).hexdigest()


def _connect(ctx: ControlContext, args: argparse.Namespace) -> None:
    from control.oauth_flow import start_authorization

    start = start_authorization(ctx.services, args.account, args.provider)
    path = _binding_file(start.state)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(start.binding)
    print(start.authorization_url)
    print("open the URL, approve, then run `blueclerk-sync callback --url <redirect URL>` "
          "on this machine within 10 minutes", file=sys.stderr)


def _binding(state: str | None, given: str | None) -> str | None:
    if given or not state:
        return given
    path = _binding_file(state)
    return path.read_text().strip() if path.exists() else None


def _callback(ctx: ControlContext, args: argparse.Namespace) -> dict[str, Any]:
    from urllib.parse import parse_qsl, urlsplit

    from control.oauth_flow import CallbackParams, complete_authorization
    from control.operations import after_connect

    query = dict(parse_qsl(urlsplit(args.url).query)) if args.url else {}
    state = args.state or query.get("state")
    params = CallbackParams(
        state=state, code=args.code or query.get("code"),
        error=args.error or query.get("error"),
        error_description=query.get("error_description"),
        realm_id=args.realm_id or query.get("realmId"), tenant=args.tenant,
        binding=_binding(state, args.binding))
    return after_connect(ctx, complete_authorization(ctx.services, params))


def _choose(ctx: ControlContext, args: argparse.Namespace) -> dict[str, Any]:
    from control.oauth_flow import choose_organisation
    from control.operations import after_connect

    return after_connect(ctx, choose_organisation(
        ctx.services, args.state, _binding(args.state, args.binding), args.tenant))


def _rotate_key(ctx: ControlContext, _args: argparse.Namespace) -> dict[str, Any]:
    rewritten = ctx.services.connections.reencrypt()
    return {"connections_reencrypted": rewritten,
            "next": "every stored token now uses the first key of TOKEN_ENCRYPTION_KEY; "
                    "remove the old key from the list"}


def _settings_changes(args: argparse.Namespace) -> dict[str, bool]:
    from control.service import SETTINGS_FIELDS

    return {name: getattr(args, name) for name in SETTINGS_FIELDS
            if getattr(args, name) is not None}


def _wizard(ctx: ControlContext, args: argparse.Namespace) -> Any:
    from control import service as svc

    a = args.account
    step = args.wizard_command
    if step == "progress":
        return svc.wizard_progress(ctx, a)
    if step == "start":
        return {**svc.start_wizard(ctx, a), "tax_rates": svc.auto_match_tax_rates(ctx, a)}
    if step == "close":
        return svc.close_wizard(ctx, a)
    if step == "skip":
        return svc.skip_step(ctx, a, args.step)
    if step == "customers":
        return svc.list_customers(ctx, a)
    if step == "import-customers":
        return svc.import_customers(ctx, a, _selections(args, with_type=True))
    if step == "items":
        return svc.list_items(ctx, a)
    if step == "import-items":
        return svc.import_items(ctx, a, _selections(args, with_type=False))
    if step == "accounts":
        return svc.income_accounts(ctx, a)
    if step == "map":
        return svc.map_item(ctx, a, args.item, args.income_account)
    if step == "map-all":
        return svc.map_all_unmapped(ctx, a, args.income_account)
    if step == "taxes":
        return svc.tax_rates(ctx, a)
    if step == "map-tax":
        return svc.map_tax_rate(ctx, a, args.tax_rate, args.tax_code)
    if step == "map-tax-all":
        return svc.map_all_unmapped_tax_rates(ctx, a, args.tax_code)
    if step == "settings":
        changes = _settings_changes(args)
        return svc.update_settings(ctx, a, changes) if changes else svc.get_settings(ctx, a)
    return svc.summary(ctx, a)


def _replay(ctx: ControlContext, args: argparse.Namespace) -> dict[str, Any]:
    from control.service import replay_dead_letters

    return replay_dead_letters(ctx, account_id=args.account, record_id=args.record,
                               replay_all=args.all)


def _serve_api(args: argparse.Namespace) -> int:
    import uvicorn

    from control.api import create_control_app
    from service.bootstrap import build_services

    services = build_services(_settings())
    try:
        # log_config=None: uvicorn logs through the root handler, whose formatter redacts.
        uvicorn.run(create_control_app(services), host=args.host, port=args.port,
                    log_level="warning", log_config=None)
    finally:
        services.close()
    return 0


# --------------------------------------------------------------------------- parser


def _account(p: argparse.ArgumentParser) -> None:
    p.add_argument("--account", required=True, help="BlueClerk account id")


def register(sub: Any) -> None:
    """Add the control-plane commands to the `blueclerk-sync` parser."""
    from control import service as svc

    p = sub.add_parser("connect", help="start connecting an accounting system; prints the "
                       "authorization URL")
    _account(p)
    p.add_argument("--provider", required=True, choices=("quickbooks", "xero", "freshbooks"))
    p.set_defaults(func=_run(_connect))

    p = sub.add_parser("callback", help="complete a connection with the redirect's code and "
                       "state")
    p.add_argument("--url", help="the full redirect URL the provider sent the browser to")
    p.add_argument("--code")
    p.add_argument("--state")
    p.add_argument("--error")
    p.add_argument("--realm-id", help="QuickBooks realmId from the redirect")
    p.add_argument("--tenant", help="Xero organisation / FreshBooks account to connect when "
                   "the consent authorised several")
    p.add_argument("--binding", help="the binding `connect` returned (default: the one "
                   "`connect` kept on this machine)")
    p.set_defaults(func=_run(_callback))

    p = sub.add_parser("choose-organisation", help="finish a consent that authorised several "
                       "organisations with the one to sync with")
    p.add_argument("--state", required=True)
    p.add_argument("--tenant", required=True, help="the organisation's tenant id")
    p.add_argument("--binding")
    p.set_defaults(func=_run(_choose))

    p = sub.add_parser("rotate-token-key", help="re-encrypt every stored token with the first "
                       "key of TOKEN_ENCRYPTION_KEY (after putting a new key first)")
    p.set_defaults(func=_run(_rotate_key))

    sub.add_parser("generate-key", help="print a new TOKEN_ENCRYPTION_KEY").set_defaults(
        func=lambda _args: print(__import__("state.crypto", fromlist=["x"]).generate_key())
        or 0)

    wizard = sub.add_parser("wizard", help="the setup wizard, step by step")
    steps = wizard.add_subparsers(dest="wizard_command", required=True)
    for name, text in (("progress", "show the wizard's progress"),
                       ("start", "open or re-run the wizard (progress is kept)"),
                       ("close", "close the wizard; progress is kept"),
                       ("customers", "step 1: list customers with suggested types and "
                        "duplicates"),
                       ("items", "step 2: list services and items with matching BlueClerk "
                        "items"),
                       ("accounts", "step 3: list income accounts, mappings and unmapped "
                        "items"),
                       ("taxes", "step 3: list tax codes, tax-rate mappings (with reasons) "
                        "and rates to map"),
                       ("summary", "step 5: what was imported, linked and mapped")):
        _account(steps.add_parser(name, help=text))
    p = steps.add_parser("skip", help="skip a step")
    _account(p)
    p.add_argument("--step", required=True, choices=svc.WIZARD_STEPS)
    for name, text, typed in (("import-customers", "step 1: import or link customers", True),
                              ("import-items", "step 2: import or link items", False)):
        p = steps.add_parser(name, help=text)
        _account(p)
        suffix = "[:Homeowner|Business|Builder]" if typed else ""
        p.add_argument("--import", dest="imports", action="append", metavar=f"ID{suffix}",
                       help="import this provider record as a new BlueClerk record")
        p.add_argument("--link", dest="links", action="append",
                       metavar=f"ID=BLUECLERK_ID{suffix}",
                       help="link this provider record to an existing BlueClerk record")
        p.add_argument("--file", help='JSON: {"selections": [{"provider_id", "action", '
                       '"link_to", "customer_type"}]}')
    p = steps.add_parser("map", help="step 3: map one item to an income account")
    _account(p)
    p.add_argument("--item", required=True, help="BlueClerk item id")
    p.add_argument("--income-account", required=True, help="provider income account id")
    p = steps.add_parser("map-all", help="step 3: map every unmapped item to one account")
    _account(p)
    p.add_argument("--income-account", required=True)
    p = steps.add_parser("map-tax", help="step 3: map one BlueClerk tax rate to a tax code")
    _account(p)
    p.add_argument("--tax-rate", required=True, help="BlueClerk tax rate key (see `taxes`)")
    p.add_argument("--tax-code", required=True, help="the provider's tax code")
    p = steps.add_parser("map-tax-all", help="step 3: map every unmapped tax rate to one code "
                         "(e.g. QuickBooks US TAX)")
    _account(p)
    p.add_argument("--tax-code", required=True)
    p = steps.add_parser("settings", help="step 4: show or change the sync settings")
    _account(p)
    for name in svc.SETTINGS_FIELDS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_on_off,
                       metavar="on|off")
    wizard.set_defaults(func=_run(_wizard))

    p = sub.add_parser("sync-now", help="send the changes waiting for Sync Now")
    _account(p)
    p.set_defaults(func=_run(lambda ctx, args: svc.sync_now(ctx, args.account)))

    p = sub.add_parser("disconnect", help="revoke the tokens and stop syncing (links kept)")
    _account(p)
    p.set_defaults(func=_run(lambda ctx, args: svc.disconnect(ctx, args.account)))

    p = sub.add_parser("status", help="connection health, last sync, counts, recent errors")
    _account(p)
    p.add_argument("--recent", type=int, default=20)
    p.set_defaults(func=_run(lambda ctx, args: svc.status(ctx, args.account, args.recent)))

    p = sub.add_parser("serve-api", help="serve the control-plane HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700)
    p.set_defaults(func=_serve_api)

    p = sub.add_parser("replay-dead-letters", help="re-run dead-lettered events after the "
                       "cause is fixed")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--account")
    which.add_argument("--record", type=int, help="dead_letters row id")
    which.add_argument("--all", action="store_true")
    p.set_defaults(func=_run(_replay))
    __import__("control.inbound_cli", fromlist=["register"]).register(sub)
