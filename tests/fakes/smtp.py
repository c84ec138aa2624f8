"""A real local SMTP server (aiosmtpd) that collects messages, with AUTH, optional STARTTLS (a
self-signed certificate made on the spot) and refusals on demand: RFC 5321 reply codes
(550 unknown mailbox, 451 try later), RFC 4954 AUTH (535 on bad credentials), RFC 3207 STARTTLS.
"""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes.server import free_port

USERNAME = "hitl-mailer"
PASSWORD = "smtp-password-Qq77!"


@dataclass
class Collected:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Handler:
    messages: list[Collected] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply
    hang_s: float = 0.0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(Collected(envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USERNAME
          and auth_data.password.decode() == PASSWORD)
    return AuthResult(success=ok, handled=False)


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class LocalSMTP:
    """`with LocalSMTP(starttls=True) as smtp:` — smtp.port, smtp.messages, smtp.ca_file."""

    def __init__(self, *, starttls: bool = False, auth: bool = True) -> None:
        self.handler = Handler()
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory()
        self.ca_file: str | None = None
        kwargs: dict[str, Any] = {}
        if starttls:
            cert, key = self_signed(Path(self._dir.name))
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            kwargs.update(tls_context=context, require_starttls=True)
            self.ca_file = str(cert)
        if auth:
            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=starttls)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    @property
    def messages(self) -> list[Collected]:
        return self.handler.messages

    def __enter__(self) -> LocalSMTP:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
        self._dir.cleanup()
