"""What one bridge connects with and how it behaves: servers, identity, credentials, TLS.

One bridge runs per root, and a root is one host of the bus (``--host``). Credentials are
per host: a NATS user/password, an nkey seed, or a creds file (user JWT and nkey), plus
TLS (a CA to trust, and a client certificate and key where the server asks for one).
docs/BRIDGE.md lists the permissions a host's user needs.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from .. import names
from ..errors import InvalidInput

__all__ = ["STREAM", "BridgeConfig"]

STREAM = "MAILBOX"
"""The JetStream stream of every host's mail (subjects ``mail.>``)."""


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """The settings of one bridge (``mailbox bridge`` options)."""

    servers: tuple[str, ...]
    host: str
    creds: str | None = None
    nkey_seed: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    replicas: int = 1
    max_age_seconds: float = 7 * 86400.0
    duplicate_window_seconds: float = 600.0
    ack_wait_seconds: float = 10.0
    max_ack_pending: int = 256
    batch: int = 32
    grace_seconds: float = 600.0
    republish_sent: bool = False
    give_up_deliveries: int = 50
    poll_seconds: float = 0.01
    receipt_seconds: float = 1.0
    status_seconds: float = 2.0
    agents_seconds: float = 2.0

    def __post_init__(self) -> None:
        names.check_host(self.host)
        if not self.servers:
            raise InvalidInput("no NATS server given", hint="--nats nats://127.0.0.1:4222")
        if self.replicas not in (1, 3, 5):
            raise InvalidInput(f"replicas must be 1, 3 or 5, not {self.replicas}")
        if self.duplicate_window_seconds > self.max_age_seconds:
            raise InvalidInput("the duplicate window must not be longer than max_age")

    @property
    def durable(self) -> str:
        """This host's durable consumer: ``bridge-<host>``."""
        return f"bridge-{self.host}"

    @property
    def filter_subject(self) -> str:
        """All this host consumes: ``mail.<host>.>`` (its mail and its receipts)."""
        return f"mail.{self.host}.>"

    @property
    def inbox_prefix(self) -> str:
        """Where replies reach this host (``_INBOX_<host>``): a permission can keep other
        hosts from subscribing to what this one fetches."""
        return f"_INBOX_{self.host}"

    def message_subject(self, host: str, agent: str) -> str:
        """Where a message for ``agent@host`` is published, signed with this host."""
        return f"mail.{host}.msg.{agent}.{self.host}"

    def receipt_subject(self, host: str) -> str:
        """Where receipts for mail that ``host`` sent are published."""
        return f"mail.{host}.rcpt.{self.host}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of ``--tls-ca``/``--tls-cert``/``--tls-key``; None without them."""
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context
