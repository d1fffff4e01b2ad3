"""Email over SMTP (aiosmtplib) with a pool of persistent connections.

Connections. Opening an SMTP session costs a TCP handshake, the greeting, EHLO, maybe STARTTLS and
AUTH: several round trips before the first message. The sender keeps up to ``pool_size`` sessions
open and runs one transaction (MAIL, RCPT, DATA) per message on an idle one; a session is recycled
after ``max_messages_per_connection`` messages (many servers cap it) and dropped after any error
that leaves it in doubt. A session the server closed while idle is detected by the next MAIL failing
to reach it; that transaction is retried once on a fresh session — nothing had been sent.

Classification of one transaction:

=========================================  ====================================================
what happened                              result
=========================================  ====================================================
250 after the message body                 sent (detail: the server's reply, usually its queue id)
cannot connect / greeting / EHLO / AUTH    transient (auth failure: permanent)
4xx at MAIL, RCPT or DATA                  transient (the server said "later")
5xx at RCPT: 550, 551, 553                 permanent, invalidate contact (no such mailbox), unless
                                           the enhanced status says otherwise (5.7.x policy...)
other 5xx                                  permanent
connection lost / timeout before DATA      transient (nothing was handed over)
connection lost / timeout during DATA      uncertain: the server may have queued the message;
                                           not retried unless the channel says on_uncertain="resend"
=========================================  ====================================================

TLS: ``tls = true`` connects over implicit TLS (port 465); ``starttls = true`` upgrades a plain
connection (port 587). The server's certificate is verified (chain and host name) against the system
trust store, or against the CA certificates in ``ca_file`` (a PEM bundle) for a private CA or a
self-signed certificate. Credentials are used when ``username`` is set (AUTH after TLS); refused
credentials are a permanent failure whose detail carries the server's reply, never the password.
A certificate that fails verification is a transient failure naming the problem.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import ssl
from dataclasses import dataclass

import aiosmtplib

from channels._config import TableReader
from channels._format import ascii_address
from channels.mask import mask_contact
from channels.message import DeliveryResult, Message
from channels.render import Renderer, RenderError

__all__ = ["SmtpOptions", "SmtpSender"]

log = logging.getLogger("cartwheel.channels.smtp")

_INVALID_MAILBOX = {550, 551, 553}
#: an RFC 3463 enhanced status code at the start of a reply's text ("5.7.1 Relaying denied")
_ENHANCED_RE = re.compile(r"\s*[245]\.(\d{1,3})\.(\d{1,3})\b")


def _dead_mailbox(code: int, text: str) -> bool:
    """Whether a 5xx refusal at RCPT says the mailbox is dead: 550/551/553 whose enhanced status, when
    there is one, is about the address (X.1.x) or a disabled mailbox (X.2.1). A policy refusal (X.7.x:
    relaying denied, a blocklisted client), a full mailbox or a routing problem refuses the message or
    the sender, not the address."""
    if code not in _INVALID_MAILBOX:
        return False
    enhanced = _ENHANCED_RE.match(text)
    return enhanced is None or enhanced[1] == "1" or (enhanced[1], enhanced[2]) == ("2", "1")


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpOptions:
    """The ``smtp`` kind's keys."""

    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = None
    tls: bool = False
    starttls: bool = False
    validate_certs: bool = True
    #: PEM bundle of CA certificates to trust for the server's certificate; None: the system store
    ca_file: str | None = None
    from_addr: str = "cartwheel@localhost"
    helo: str = "localhost"
    max_messages_per_connection: int = 100

    @classmethod
    def from_reader(cls, r: TableReader) -> SmtpOptions:
        """Read and validate the kind's keys."""
        tls = r.bool("tls", False)
        starttls = r.bool("starttls", False)
        if tls and starttls:
            raise r.error("starttls", "false when tls = true (implicit TLS and STARTTLS exclude each other)", starttls)
        from_addr = r.str("from", "cartwheel@localhost", hint='an email address like "shop@example.com"')
        assert from_addr is not None
        if "@" not in from_addr or any(c in from_addr for c in "<>\r\n "):
            raise r.error("from", 'a bare email address like "shop@example.com"', from_addr)
        username = r.str("username", None)
        password = r.str("password", None, secret=True)
        if username and password is None:
            raise r.error("password", "a password when username is set", None, show=False)
        validate_certs = r.bool("validate_certs", True)
        ca_file = r.str("ca_file", None, hint="a path to a PEM file of CA certificates")
        if ca_file is not None:
            ca_file = os.path.expanduser(ca_file)
            if not (tls or starttls):
                raise r.error("ca_file", "to be set only with tls = true or starttls = true", ca_file)
            if not validate_certs:
                raise r.error("validate_certs", "true when ca_file is set", validate_certs)
            if not os.path.isfile(ca_file):
                raise r.error("ca_file", "a path to an existing PEM file of CA certificates (no such file)", ca_file)
            try:
                ssl.create_default_context(cafile=ca_file)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise r.error("ca_file", f"a readable PEM file of CA certificates ({exc})", ca_file) from None
        return cls(
            host=r.str("host", "127.0.0.1") or "127.0.0.1",
            port=r.int("port", 465 if tls else 25, minimum=1, maximum=65535),
            username=username,
            password=password,
            tls=tls,
            starttls=starttls,
            validate_certs=validate_certs,
            ca_file=ca_file,
            from_addr=from_addr,
            helo=r.str("helo", "localhost") or "localhost",
            max_messages_per_connection=r.int("max_messages_per_connection", 100, minimum=1),
        )


def _tls_context(o: SmtpOptions) -> ssl.SSLContext:
    """The client TLS context: verifies the chain (system store, or ``ca_file``) and the host name."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=o.ca_file)
    if not o.validate_certs:  # the explicit ``validate_certs = false`` opt-out; not with ca_file
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _cert_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error behind ``exc`` (aiosmtplib wraps implicit-TLS ones)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class _Connection:
    """One SMTP session and how many messages it has carried."""

    __slots__ = ("client", "used")

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.used = 0


class SmtpSender:
    """Sends each message as one SMTP transaction on a pooled session; see the module docstring.

    Args:
        options: the connection settings.
        renderer: builds the MIME message.
        timeout_s: per-command timeout, seconds (connect, each reply, the body upload).
        pool_size: sessions kept open at most (match the pool's concurrency).
    """

    kind = "smtp"

    def __init__(self, options: SmtpOptions, *, renderer: Renderer, timeout_s: float = 30.0, pool_size: int = 8) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        self.options = options
        self.renderer = renderer
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        #: built once (the trust store is read once, not per connection); None without TLS
        self._tls_context = _tls_context(options) if options.tls or options.starttls else None
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._quitting: set[asyncio.Task[None]] = set()
        #: sessions opened so far (for tests and the benchmark)
        self.connections_opened = 0

    # -- the connection pool --------------------------------------------------------------------
    async def _acquire(self) -> tuple[_Connection, bool]:
        """An idle session, or a new one while under ``pool_size``; (connection, is_fresh)."""
        while True:
            while self._idle:
                conn = self._idle.pop()
                if conn.client.is_connected:
                    return conn, False
                self._discard(conn)
            if self._open < self.pool_size:
                self._open += 1
                try:
                    return await self._connect(), True
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                else:
                    self._wake()  # we were woken but leave: pass the turn on
                raise

    async def _connect(self) -> _Connection:
        o = self.options
        client = aiosmtplib.SMTP(
            hostname=o.host,
            port=o.port,
            username=o.username,
            password=o.password,
            use_tls=o.tls,
            start_tls=o.starttls,
            validate_certs=o.validate_certs,
            tls_context=self._tls_context,
            local_hostname=o.helo,
            timeout=self.timeout_s,
        )
        try:
            await client.connect()
        except BaseException:
            # A refused certificate, STARTTLS or login can leave aiosmtplib's transport open.
            client.close()
            raise
        self.connections_opened += 1
        return _Connection(client)

    def _release(self, conn: _Connection, healthy: bool) -> None:
        conn.used += 1
        if (
            healthy
            and not self._closed
            and conn.client.is_connected
            and conn.used < self.options.max_messages_per_connection
        ):
            self._idle.append(conn)
        else:
            if healthy and conn.client.is_connected:
                task = asyncio.get_running_loop().create_task(self._quit(conn))
                self._quitting.add(task)
                task.add_done_callback(self._quitting.discard)
            else:
                conn.client.close()
            self._open -= 1
        self._wake()

    def _discard(self, conn: _Connection) -> None:
        conn.client.close()
        self._open -= 1

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _quit(self, conn: _Connection) -> None:
        try:
            await conn.client.quit(timeout=min(self.timeout_s, 5.0))
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            conn.client.close()

    # -- sending --------------------------------------------------------------------------------
    async def send(self, message: Message) -> DeliveryResult:
        """One SMTP transaction for ``message``."""
        to = ascii_address(message.to)  # an internationalised domain in IDNA
        if not to.isascii():
            return DeliveryResult.permanent("recipient address is not ASCII (SMTPUTF8 is not used)")
        try:
            data = self.renderer.email_bytes(message, from_addr=self.options.from_addr)
        except RenderError as exc:
            return DeliveryResult.permanent(f"render: {exc}")
        except ValueError as exc:  # header injection attempts, malformed addresses, a header not ASCII
            return DeliveryResult.permanent(f"cannot build the email: {exc}")
        envelope_from = ascii_address(str(message.extra.get("email_from") or self.options.from_addr))
        result = DeliveryResult.transient("smtp: no attempt made")
        for _ in range(2):
            try:
                conn, fresh = await self._acquire()
            except aiosmtplib.SMTPAuthenticationError as exc:
                # 454 "temporary authentication failure" (RFC 4954) is worth trying again; 535 is not
                verdict = DeliveryResult.transient if 400 <= exc.code < 500 else DeliveryResult.permanent
                return verdict(f"smtp auth failed: {exc.code} {exc.message}", provider_status=str(exc.code))
            except aiosmtplib.SMTPResponseException as exc:
                return DeliveryResult.transient(f"smtp connect: {exc.code} {exc.message}", provider_status=str(exc.code))
            except (aiosmtplib.SMTPException, OSError) as exc:
                cert_error = _cert_error(exc)
                if cert_error is not None:
                    return DeliveryResult.transient(
                        f"smtp tls: certificate verification failed: {cert_error.verify_message or cert_error}"
                    )
                return DeliveryResult.transient(f"smtp connect failed: {exc}")
            result, healthy, stale = await self._transaction(conn, envelope_from, message, data)
            self._release(conn, healthy)
            if stale and not fresh:
                continue  # the server had closed the idle session; nothing was sent: once more, fresh
            return result
        return result

    async def _transaction(
        self, conn: _Connection, envelope_from: str, message: Message, data: bytes
    ) -> tuple[DeliveryResult, bool, bool]:
        """Run MAIL/RCPT/DATA; return (result, session still usable, session was stale)."""
        client = conn.client
        phase = "MAIL"
        try:
            await client.mail(envelope_from)
            phase = "RCPT"
            await client.rcpt(ascii_address(message.to))
            phase = "DATA"
            response = await client.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            code = exc.code
            detail = f"smtp {code} at {phase}: {exc.message}"[:300]
            healthy = code != 421 and await self._reset(client)
            if 400 <= code < 500:
                return DeliveryResult.transient(detail, provider_status=str(code)), healthy, False
            invalid = phase == "RCPT" and _dead_mailbox(code, exc.message)
            if invalid:
                log.info("smtp: %s rejected at RCPT (%d)", mask_contact(message.to), code)
            return DeliveryResult.permanent(detail, provider_status=str(code), invalidate_contact=invalid), healthy, False
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            client.close()
            if phase == "DATA":
                return DeliveryResult.uncertain(f"smtp connection lost during DATA: {exc}"), False, False
            stale = isinstance(exc, (aiosmtplib.SMTPServerDisconnected, ConnectionError))
            return DeliveryResult.transient(f"smtp connection lost at {phase}: {exc}"), False, stale
        except ValueError as exc:  # aiosmtplib refuses addresses carrying control characters
            healthy = await self._reset(client)
            return DeliveryResult.permanent(f"smtp: invalid address: {exc}"), healthy, False
        return DeliveryResult.sent(response.message[:200], provider_status=str(response.code)), True, False

    async def _reset(self, client: aiosmtplib.SMTP) -> bool:
        """RSET after a refused command so the session can carry the next message."""
        if not client.is_connected:
            return False
        try:
            await client.rset()
            return True
        except (aiosmtplib.SMTPException, OSError):
            client.close()
            return False

    async def close(self) -> None:
        """QUIT idle sessions; sessions in use are closed when their transaction ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        await asyncio.gather(*(self._quit(conn) for conn in idle), *self._quitting, return_exceptions=True)
