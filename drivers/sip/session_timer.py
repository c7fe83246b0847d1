"""Session timers (RFC 4028), only when the other side asks for or grants them. Pure code.

UAS side: an INVITE with ``Session-Expires`` gets the interval back in our 200 (422 with
Min-SE when it is below ours). The caller refreshes unless it named us (``refresher=uas``).
UAC side (our INVITE says ``Supported: timer``): a 2xx with ``Session-Expires`` sets the
timer, ``refresher=uac`` (or none named) meaning us; a 422 names the ``Min-SE`` to retry with.
Either way the call then arms one timer: as the refresher, a re-INVITE at half the interval;
otherwise a BYE if no refresh arrived by ``interval - min(32, interval / 3)`` (§10).
"""
from __future__ import annotations

from dataclasses import dataclass

from drivers.sip.errors import SipSyntaxError
from drivers.sip.message import SipRequest, SipResponse
from drivers.sip.uri import is_digits, parse_params

MIN_SE_S = 90  # RFC 4028 §4: the smallest Min-SE; shorter sessions would mean a refresh every 45 s


class SessionIntervalTooSmall(Exception):
    """Answer 422 with ``Min-SE: min_se``."""

    def __init__(self, min_se: int) -> None:
        super().__init__(f"Session-Expires below {min_se}")
        self.min_se = min_se


@dataclass(frozen=True, slots=True)
class SessionTimer:
    interval: int  # seconds
    we_refresh: bool  # refresher=uas: we send the re-INVITEs
    peer_supports: bool  # "timer" in the caller's Supported: we may Require it in the 200

    @property
    def refresh_after(self) -> float:
        return self.interval / 2

    @property
    def expire_after(self) -> float:
        return self.interval - min(32.0, self.interval / 3)

    def response_headers(self) -> tuple[tuple[str, str], ...]:
        who = "uas" if self.we_refresh else "uac"
        headers: tuple[tuple[str, str], ...] = (("Session-Expires", f"{self.interval};refresher={who}"),)
        if self.peer_supports:
            headers += (("Require", "timer"),)
        return headers


def session_timer_for(request: SipRequest, min_se: int | None = None) -> SessionTimer | None:
    """The timer a (re-)INVITE or UPDATE asks for; None when it asks for none.

    Raises SipSyntaxError for an unreadable header, SessionIntervalTooSmall for 422.
    """
    value = request.headers.get("Session-Expires")
    if value is None:
        return None
    min_se = MIN_SE_S if min_se is None else min_se
    number, _, params_text = value.partition(";")
    number = number.strip()
    if not is_digits(number):
        raise SipSyntaxError(f"bad Session-Expires {value!r}")
    interval = int(number)
    if interval < min_se:
        raise SessionIntervalTooSmall(max(min_se, min_se_of(request)))
    refresher = dict(parse_params(params_text)).get("refresher")
    supported = {t.strip().lower() for t in request.headers.get_all("Supported")}
    return SessionTimer(interval, refresher == "uas", "timer" in supported)


def session_timer_granted(response: SipResponse) -> SessionTimer | None:
    """The timer a 2xx to our (re-)INVITE sets: we refresh unless it names the UAS (§7.2, §9).
    None when it carries no (readable) ``Session-Expires``: no timer for this session."""
    number, _, params_text = (response.headers.get("Session-Expires") or "").partition(";")
    number = number.strip()
    if not is_digits(number) or int(number) == 0:
        return None
    refresher = dict(parse_params(params_text)).get("refresher")
    # §8.1: a 2xx may not grant less than the Min-SE we sent; a peer that does would have us
    # refresh (or hang up) every few seconds, so hold it to that floor instead
    return SessionTimer(max(int(number), MIN_SE_S), refresher != "uas", True)


def min_se_of(message: SipRequest | SipResponse) -> int:
    """The ``Min-SE`` a request or a 422 carries (0 when none or unreadable)."""
    text = (message.headers.get("Min-SE") or "").split(";")[0].strip()
    return int(text) if is_digits(text) else 0
