"""Registrar and location service for desk phones (RFC 3261 §10.3). Pure code.

``Registrar.handle`` takes a REGISTER, the source it came from and ``now``, and returns
the status and headers to answer plus, when the attempt counts against the source,
a ``failure`` reason for the guard. Every REGISTER is authenticated with Digest; the
address of record is the To user and must be the authenticated user. An unknown
user and a wrong password get the same answers (401 without credentials, 403 with),
so extensions cannot be enumerated. Credentials whose digest ``uri`` is not the
Request-URI (RFC 2617 §3.2.2.5) get that same 403 and count as a failure.

What counts against the source never depends on whether the user exists, or a scanner
could tell extensions apart by how many attempts it gets before the ban. A 403 always
counts. A 401 counts once the source address (IP and port) holds more than
``FREE_UNANSWERED_CHALLENGES`` challenges it has not answered: a phone answers its
challenge at once (and never pays), a sweep without credentials never does. Any answer the
digest can judge (right or wrong, and a wrong one is a 403) clears the address's count.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from drivers.sip.digest import DigestServer, Verdict
from drivers.sip.errors import SipSyntaxError
from drivers.sip.message import SipRequest
from drivers.sip.uri import is_digits, parse_name_addr

MAX_BINDINGS_PER_AOR = 10  # phones per extension (desk phone, softphone, DECT base, ...)
# Challenges an address may leave unanswered before each further one counts as a failure: a phone
# registering several accounts at once from one socket, a client resending before our 401 arrives.
FREE_UNANSWERED_CHALLENGES = 5
MAX_CHALLENGED_ADDRESSES = 4096  # addresses with unanswered challenges remembered (bounded against floods)


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    min_expires: int = 60  # shorter requests get 423 Interval Too Brief
    max_expires: int = 3600  # longer requests are shortened to this
    default_expires: int = 3600  # when neither the Contact nor Expires says

    def __post_init__(self) -> None:
        if not 0 < self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("registrar: need 0 < min_expires <= default_expires <= max_expires")


@dataclass(frozen=True, slots=True)
class Binding:
    aor: str  # the extension
    contact: str  # the Contact URI as registered
    expires_at: float
    call_id: str
    cseq: int
    source: tuple[str, int]  # where the REGISTER came from (the phone behind NAT is reached there)
    transport: str  # "udp" | "tcp" | "tls"

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    failure: str | None = None  # counts against the source (scanner detection)
    user: str | None = None
    changed: bool = False  # bindings were added, refreshed or removed


class LocationService:
    """AOR -> bindings, expired lazily. Only authenticated users ever get an entry."""

    def __init__(self) -> None:
        self._table: dict[str, dict[str, Binding]] = {}

    def bindings(self, aor: str, now: float) -> tuple[Binding, ...]:
        entry = self._table.get(aor)
        if not entry:
            return ()
        for key in [k for k, b in entry.items() if b.expires_at <= now]:
            del entry[key]
        return tuple(sorted(entry.values(), key=lambda b: b.expires_at))

    def get(self, aor: str, contact: str) -> Binding | None:
        return self._table.get(aor, {}).get(contact)

    def put(self, binding: Binding) -> None:
        self._table.setdefault(binding.aor, {})[binding.contact] = binding

    def remove(self, aor: str, contact: str | None = None) -> None:
        if contact is None:
            self._table.pop(aor, None)
        else:
            self._table.get(aor, {}).pop(contact, None)

    def aors(self, now: float) -> tuple[str, ...]:
        return tuple(a for a in sorted(self._table) if self.bindings(a, now))


class Registrar:
    def __init__(self, auth: DigestServer, config: RegistrarConfig = RegistrarConfig()) -> None:
        self.auth = auth
        self.config = config
        self.location = LocationService()
        self._unanswered: OrderedDict[tuple[str, int], int] = OrderedDict()  # address -> challenges

    def _challenge(self, now: float, *, stale: bool = False, failure: str | None = None,
                   user: str | None = None) -> RegisterOutcome:
        values = self.auth.challenges(now, stale=stale)
        return RegisterOutcome(401, None, tuple(("WWW-Authenticate", v) for v in values), failure, user)

    def handle(self, request: SipRequest, source: tuple[str, int], transport: str, now: float) -> RegisterOutcome:
        aor = request.to_addr.uri.user or ""
        result = self.auth.check(request.headers.get("Authorization"), "REGISTER", now, request.uri)
        if result.verdict is Verdict.CHALLENGE:
            return self._challenge(now, failure=self._challenged(source, aor), user=aor)
        self._unanswered.pop(source, None)  # answered (a stale nonce too): judged by the verdict from here on
        if result.verdict is Verdict.STALE:  # the right password on an old nonce
            return self._challenge(now, stale=True, user=aor)
        if result.verdict is Verdict.FAILED:
            return RegisterOutcome(403, None, (), f"{result.reason} for {(result.username or '')[:32]!r}", aor)
        if result.username != aor:
            return RegisterOutcome(403, None, (), f"user {result.username!r} tried to register {aor[:32]!r}", aor)
        return self._update(request, aor, source, transport, now)

    def _challenged(self, source: tuple[str, int], aor: str) -> str | None:
        """One more challenge for ``source`` to answer; the failure to report once it holds too many."""
        count = self._unanswered.pop(source, 0) + 1
        self._unanswered[source] = count  # most recently challenged last
        if len(self._unanswered) > MAX_CHALLENGED_ADDRESSES:
            self._unanswered.popitem(last=False)
        if count <= FREE_UNANSWERED_CHALLENGES:
            return None
        return f"REGISTER for {aor[:32]!r} without usable credentials ({count} challenges unanswered)"

    def _expires_header(self, request: SipRequest) -> int | None:
        text = request.headers.get("Expires")
        if text is None:
            return None
        text = text.strip()
        if not is_digits(text):
            raise SipSyntaxError(f"bad Expires {text!r}")
        return int(text)

    def _update(self, request: SipRequest, aor: str, source: tuple[str, int], transport: str,
                now: float) -> RegisterOutcome:
        cfg = self.config
        contacts = request.headers.get_all("Contact")
        try:
            header_expires = self._expires_header(request)
        except SipSyntaxError as exc:
            return RegisterOutcome(400, f"Bad Request ({exc})", user=aor)
        changed = False
        if any(c.strip() == "*" for c in contacts):  # §10.2.2: remove every binding
            if len(contacts) != 1 or header_expires != 0:
                return RegisterOutcome(400, "Bad Request (Contact: * needs Expires: 0)", user=aor)
            changed = bool(self.location.bindings(aor, now))
            self.location.remove(aor)
            return RegisterOutcome(200, None, self._current(aor, now), user=aor, changed=changed)
        wanted: list[tuple[str, int]] = []
        for value in contacts:
            try:
                addr = parse_name_addr(value)
                expires_param = dict(addr.params).get("expires")
                if expires_param is not None and not is_digits(expires_param):
                    raise SipSyntaxError(f"bad expires parameter {expires_param!r}")
            except SipSyntaxError as exc:
                return RegisterOutcome(400, f"Bad Request ({str(exc)[:60]})", user=aor)
            if expires_param is not None:
                expires = int(expires_param)
            elif header_expires is not None:
                expires = header_expires
            else:
                expires = cfg.default_expires
            if 0 < expires < cfg.min_expires:
                return RegisterOutcome(423, "Interval Too Brief", (("Min-Expires", str(cfg.min_expires)),),
                                       user=aor)
            wanted.append((str(addr.uri), min(expires, cfg.max_expires)))
        for contact, _ in wanted:  # §10.3 step 7: Call-ID/CSeq ordering, checked before any change
            old = self.location.get(aor, contact)
            if old is not None and old.call_id == request.call_id and request.cseq.number <= old.cseq:
                return RegisterOutcome(500, "Server Internal Error (out-of-order CSeq)",
                                       (("Retry-After", "1"),), user=aor)
        existing = {b.contact for b in self.location.bindings(aor, now)}
        new = {c for c, e in wanted if e > 0 and c not in existing}
        if len(existing) + len(new) > MAX_BINDINGS_PER_AOR:
            return RegisterOutcome(403, "Forbidden (too many registered contacts)", user=aor)
        for contact, expires in wanted:
            changed = True
            if expires == 0:
                self.location.remove(aor, contact)
            else:
                self.location.put(Binding(aor, contact, now + expires, request.call_id, request.cseq.number,
                                          source, transport))
        return RegisterOutcome(200, None, self._current(aor, now), user=aor, changed=changed)

    def _current(self, aor: str, now: float) -> tuple[tuple[str, str], ...]:
        return tuple(("Contact", f"<{b.contact}>;expires={b.remaining(now)}")
                     for b in self.location.bindings(aor, now))
