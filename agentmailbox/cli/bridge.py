"""``mailbox bridge``: run this host's bridge over NATS JetStream, or show its status.

The daemon (and with it ``nats``, the ``nats`` extra) is imported only when the bridge
runs; ``mailbox bridge status`` reads the files the daemon leaves and never connects.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import MailboxError
from ._base import Ctx, emit, json_option, pass_ctx

BRIDGE_EPILOG = """\b
Examples:
  mailbox bridge --nats nats://127.0.0.1:4222 --host build1
  mailbox bridge --nats tls://nats.example:4222 --host gpu1 --creds gpu1.creds --tls-ca ca.pem
  mailbox send --from alice --to bob@gpu1 --body "train it"
  mailbox bridge status --json

\b
One bridge per root, named by --host; restartable at any moment. It publishes
bridge/out/ (mail to agent@host) and delivers mail for this host into the local
inboxes. JSON logs on stderr; SIGTERM stops it cleanly (exit 0). docs/BRIDGE.md.
"""


@click.group(invoke_without_command=True, epilog=BRIDGE_EPILOG)
@click.option("--nats", "servers", multiple=True, metavar="URL",
              help="A NATS server (repeat for a cluster).")
@click.option("--host", metavar="NAME",
              help="This root's host name: mail to agent@NAME is delivered here.")
@click.option("--creds", metavar="FILE", help="A NATS credentials file (user JWT and nkey).")
@click.option("--nkey", metavar="FILE", help="An nkey seed file.")
@click.option("--user", metavar="NAME", help="A NATS user (with --password).")
@click.option("--password", envvar="MAILBOX_NATS_PASSWORD", metavar="TEXT",
              help="Its password (default: $MAILBOX_NATS_PASSWORD).")
@click.option("--tls-ca", metavar="FILE", help="The CA that signs the servers' certificates.")
@click.option("--tls-cert", metavar="FILE", help="A client certificate, if the server asks.")
@click.option("--tls-key", metavar="FILE", help="Its private key.")
@click.option("--replicas", type=click.Choice(["1", "3", "5"]), default="1", show_default=True,
              help="Replicas of the stream and consumer (3 on a 3-node cluster).")
@click.option("--grace", type=click.FloatRange(min=0), default=600.0, show_default=True,
              metavar="SECONDS", help="How long acknowledged copies stay in bridge/sent/.")
@click.option("--ack-wait", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              metavar="SECONDS", help="How long a fetched message may wait for its ack before "
              "the server sends it again.")
@click.option("--republish-sent", is_flag=True,
              help="At start, publish bridge/sent/ again (after the NATS host crashed).")
@click.pass_context
def bridge(click_ctx: click.Context, /, servers: tuple[str, ...], host: str | None,
           **opts: Any) -> None:
    """Carry mail between this root and other hosts over NATS JetStream."""
    if click_ctx.invoked_subcommand is not None:
        return
    if not servers or host is None:
        raise click.UsageError("mailbox bridge needs --nats URL and --host NAME")
    c = click_ctx.find_object(Ctx)
    if c is None:
        raise click.UsageError("mailbox bridge runs under the mailbox command")
    _run(c, servers, host, opts)


def _run(c: Ctx, servers: tuple[str, ...], host: str, opts: dict[str, Any]) -> None:
    try:
        from ..bridge.daemon import run_bridge
    except ImportError as exc:
        raise MailboxError(f"the bridge needs nats-py: {exc}",
                           hint="pip install 'agentmailbox[nats]'") from exc
    from ..bridge.config import BridgeConfig
    from ..logs import daemon_logging

    config = BridgeConfig(
        servers=servers, host=host, creds=opts["creds"], nkey_seed=opts["nkey"],
        user=opts["user"], password=opts["password"], tls_ca=opts["tls_ca"],
        tls_cert=opts["tls_cert"], tls_key=opts["tls_key"], replicas=int(opts["replicas"]),
        grace_seconds=opts["grace"], republish_sent=opts["republish_sent"],
        ack_wait_seconds=opts["ack_wait"])
    with daemon_logging():
        run_bridge(c.mb.root, config)


@bridge.command(epilog="docs/BRIDGE.md says what each field means.")
@json_option
@pass_ctx
def status(c: Ctx, as_json: bool) -> None:
    """The outbound spool, the consumer, the connection: what the bridge last saw."""
    from ..bridge.status import bridge_status

    emit(bridge_status(c.mb.root), as_json, _text)


def _text(s: dict[str, Any]) -> str:
    oldest = s["spool_oldest_age_seconds"]
    consumer = s["consumer"] or {}
    lines = [
        f"bridge     {'running' if s['running'] else 'not running'}"
        f"{' as ' + s['host'] if s['host'] else ''}"
        f"{' (pid ' + str(s['pid']) + ')' if s['running'] else ''}",
        f"spool      {s['spool_depth']} waiting"
        f"{'' if oldest is None else f', oldest {oldest:.1f} s'}; {s['sent_kept']} kept sent",
        f"server     {s['server_version'] or '-'}, "
        f"{'connected' if s['connected'] else 'not connected'}, {s['reconnects']} reconnects",
        f"consumer   {consumer.get('num_pending', '-')} pending, "
        f"{consumer.get('num_ack_pending', '-')} unacknowledged, "
        f"{consumer.get('num_redelivered', '-')} redelivered",
        f"last ack   {s['last_ack_at'] or '-'}",
        f"receipts   {s['tracked']} remote messages still tracked",
        f"agents     {s['remote_agents']} of other hosts known (bridge/agents.json)",
        *(f"problem    {p}" for p in s["problems"]),
    ]
    return "\n".join(lines)
