"""The GSM simulator's behaviour model: command text in, reply bytes out (per profile).

Pure logic apart from two hooks into the simulator (start/stop the PCM stream).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.sim.gsm import GsmSimulator

OK = b"\r\nOK\r\n"
_MANUFACTURER = {"huawei": ("huawei", "E1752"), "simcom": ("SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H"),
                 "quectel": ("Quectel", "EC25"), "generic": ("Generic", "GSM MODEM")}
_PIN_FREE = ("AT", "ATZ", "ATE0", "ATE1", "AT+CMEE", "AT+CPIN", "AT+CFUN", "AT+CGMI", "AT+CGMM", "AT+CGSN", "AT+CGMR")
_SIM_BUSY_CMDS = ("AT+CSCA", "AT+CPMS", "AT+CMGF", "AT+CMGL", "AT+CMGR")


def line(text: str) -> bytes:
    return f"\r\n{text}\r\n".encode()


@dataclass(slots=True)
class SimCall:
    direction: str  # "in" | "out"
    number: str | None
    validity: int
    state: str  # "ringing" | "dialing" | "alerting" | "active"
    started: float = 0.0
    clir: bool = False  # outgoing: dialled with the I modifier (caller ID withheld)
    pcm: bytes = b""  # outgoing: the callee's voice, looped on the PCM port once answered
    announced: bool = False  # incoming: the ^DSCI "incoming" line went out with the first ring


class ModemModel:
    def __init__(self, sim: "GsmSimulator", *, pin: str | None, storage: str) -> None:
        self.sim = sim
        self.pin = pin
        self.storage = storage
        self.stores: dict[str, dict[int, str]] = {"SM": {}, "ME": {}, "SR": {}}
        self.capacity = 30
        self.mr = 0
        self.sent_pdus: list[str] = []
        self.send_failures = 0  # the next N PDU submissions answer +CMS ERROR: 500
        self.cpcmreg_failures = 0  # the next N AT+CPCMREG=1 answer ERROR (degraded SIM7600)
        self.sim_busy_after_pin = 0  # SIM-dependent commands answering +CME ERROR: 14 after the PIN
        self.ussd_replies: dict[str, list[bytes]] = {}
        self.call: SimCall | None = None
        self.powered = True
        self.power_on()

    # ---- power ----------------------------------------------------------------------
    def power_on(self) -> None:
        self.powered = True
        self.echo = True
        self.curc = True
        self.crc = False
        self.locked = self.pin is not None
        self.busy_left = 0
        self.clcc_urc = False  # SIMCom AT+CLCC=1: +CLCC lines as URCs on call state changes
        self.dsci = False  # Quectel AT^DSCI=1: ^DSCI lines as URCs on call state changes
        self.call = None

    def power_off(self) -> None:
        self.powered = False
        self.call = None

    def boot_urcs(self) -> bytes:
        key = self.sim.profile.key
        if key == "huawei":
            return line("^SYSSTART")
        if key in ("simcom", "quectel"):
            return line("RDY")
        return b""

    # ---- helpers --------------------------------------------------------------------
    @property
    def key(self) -> str:
        return self.sim.profile.key

    def error(self) -> bytes:
        return line("COMMAND NOT SUPPORT") if self.key == "huawei" else line("ERROR")

    def info(self, *lines: str) -> bytes:
        return b"".join(line(x) for x in lines) + OK

    def store(self, hex_pdu: str, storage: str | None = None) -> int:
        mem = self.stores.setdefault(storage or self.storage, {})
        index = next(i for i in range(1, 1000) if i not in mem)
        mem[index] = hex_pdu
        return index

    def after_script(self, text: str) -> None:
        up = text.upper()
        if up in ("ATE0", "ATE1"):
            self.echo = up == "ATE1"
        elif up == "ATZ":
            self.echo = True

    # ---- commands -------------------------------------------------------------------
    def command(self, text: str) -> bytes:
        up = text.upper()
        if not up.startswith("AT"):
            return b""  # stray text: real modems ignore it
        if self.locked and not up.startswith(_PIN_FREE):
            return line("+CME ERROR: 11")
        if self.busy_left and up.startswith(_SIM_BUSY_CMDS):
            self.busy_left -= 1
            return line("+CME ERROR: 14")
        ident = self.sim.identity
        manu, model = _MANUFACTURER.get(self.key, _MANUFACTURER["generic"])
        simple = {
            "AT": OK, "AT+CMEE=1": OK, "AT+CMEE=2": OK, "AT+CMGF=0": OK, "AT+CLIP=1": OK, "AT+CVHU=0": OK,
            "AT+CREG=2": OK, "AT+COPS=3,0": OK, "AT+CNMI=2,1,0,2,0": OK, "AT+CNMI=2,1,0,1,0": OK,
            "AT+CGMI": self.info(ident.manufacturer or manu), "AT+CGMM": self.info(ident.model or model),
            "AT+CGSN": self.info(ident.imei), "AT+CIMI": self.info(ident.imsi),
            "AT+CREG?": self.info('+CREG: 2,1,"1F54","15A"'), "AT+COPS?": self.info('+COPS: 0,0,"Vodafone UK",2'),
            "AT+CSQ": self.info("+CSQ: 17,99"), "AT+CSCA?": self.info('+CSCA: "+447785016005",145'),
            "AT+CCID": self.info(f"+CCID: {ident.iccid}"),
        }
        if up in simple:
            return simple[up]
        if up == "ATZ":
            self.echo = True
            return OK
        if up in ("ATE0", "ATE1"):
            self.echo = up == "ATE1"
            return OK
        if up == "AT+CRC=1":
            self.crc = True
            return OK
        if up == "AT+CPIN?":
            return self.info("+CPIN: SIM PIN" if self.locked else "+CPIN: READY")
        m = re.fullmatch(r'AT\+CPIN="?(\d+)"?', up)
        if m:
            if not self.locked:
                return line("+CME ERROR: 3")
            if m.group(1) != self.pin:
                return line("+CME ERROR: 16")
            self.locked = False
            self.busy_left = self.sim_busy_after_pin
            return OK + line("+CPIN: READY")
        if self.key == "huawei":
            out = self._huawei(up)
            if out is not None:
                return out
        if up == "AT+QCCID" and self.key == "quectel":
            return self.info(f"+QCCID: {ident.iccid}")
        if up == "AT+CLCC=1" and self.key == "simcom":
            self.clcc_urc = True
            return OK
        if up == "AT^DSCI=1" and self.key == "quectel":
            self.dsci = True
            return OK
        for handler in (self._storage, self._calls, self._sms_send, self._ussd):
            out = handler(up, text)
            if out is not None:
                return out
        return self.error()

    def _huawei(self, up: str) -> bytes | None:
        if up == "AT^CURC=0":
            self.curc = False
            return OK
        if up == "AT^CVOICE?":
            return self.info("^CVOICE:0,8000,16,20")
        if up == "AT^ICCID?":
            return self.info(f"^ICCID: {self.sim.identity.iccid}")
        if up == "AT^DDSETEX=2":
            if self.call and self.call.state == "active":
                self.sim.start_audio()
            return OK
        if up.startswith("AT^DTMF="):
            return OK
        if up.startswith("AT+VTS"):
            return self.error()
        if up == "AT+CHLD=2" and self.call and self.call.state == "ringing":
            return self._answer()
        return None

    def _storage(self, up: str, text: str) -> bytes | None:
        if up == "AT+CPMS?":
            n = len(self.stores.get(self.storage, {}))
            return self.info(f'+CPMS: "{self.storage}",{n},{self.capacity},"{self.storage}",{n},{self.capacity},'
                             f'"{self.storage}",{n},{self.capacity}')
        m = re.fullmatch(r'AT\+CPMS="(\w+)".*', up)
        if m:
            self.storage = m.group(1)
            n = len(self.stores.setdefault(self.storage, {}))
            return self.info(f"+CPMS: {n},{self.capacity},{n},{self.capacity},{n},{self.capacity}")
        m = re.fullmatch(r"AT\+CMGR=(\d+)", up)
        if m:
            pdu = self.stores.get(self.storage, {}).get(int(m.group(1)))
            if pdu is None:
                return line("+CMS ERROR: 321")
            return self.info(f"+CMGR: 0,,{len(pdu) // 2 - 1 - int(pdu[:2], 16)}", pdu)
        m = re.fullmatch(r"AT\+CMGD=(\d+)(?:,(\d))?", up)
        if m:
            mem = self.stores.get(self.storage, {})
            if m.group(2) == "4":
                mem.clear()
            else:
                mem.pop(int(m.group(1)), None)
            return OK
        if up == "AT+CMGL=4":
            mem = self.stores.get(self.storage, {})
            rows = []
            for i, pdu in sorted(mem.items()):
                rows += [f"+CMGL: {i},0,,{len(pdu) // 2 - 1 - int(pdu[:2], 16)}", pdu]
            return self.info(*rows)
        return None

    def _sms_send(self, up: str, text: str) -> bytes | None:
        if re.fullmatch(r"AT\+CMGS=\d+", up):
            self.sim.enter_pdu_mode()
            return b"\r\n> "
        return None

    def pdu_entered(self, hex_pdu: str, aborted: bool) -> bytes:
        if aborted:
            return OK
        if self.send_failures > 0:
            self.send_failures -= 1
            return line("+CMS ERROR: 500")
        self.sent_pdus.append(hex_pdu)
        self.mr = (self.mr + 1) % 256
        return line(f"+CMGS: {self.mr}") + OK

    def _ussd(self, up: str, text: str) -> bytes | None:
        m = re.fullmatch(r'AT\+CUSD=1,"([^"]*)"(?:,\d+)?', text, re.IGNORECASE)
        if not m:
            return OK if up == "AT+CUSD=2" else None
        code = m.group(1)
        if self.key == "huawei" and not re.fullmatch(r"(?:[0-9A-F]{2})+", code):
            return line("ERROR")  # ^USSDMODE=1: only packed requests
        reply = self.ussd_replies.get(code, [line('+CUSD: 0,"Balance 10.00 GBP",15')])
        return OK + b"".join(reply)

    # ---- calls ----------------------------------------------------------------------
    def incoming_call(self, number: str | None, validity: int) -> None:
        self.call = SimCall("in", number, validity, "ringing")

    def ring_bytes(self) -> bytes:
        c = self.call
        if c is None:
            return b""
        ring = line("+CRING: VOICE") if self.crc else line("RING")
        if not c.announced:
            c.announced = True
            ring += self._dsci(c, 4)
        if c.validity:
            clip = f'+CLIP: "",128,"",0,"",{c.validity}'
        elif self.key == "huawei":
            clip = f'+CLIP: "{c.number}",145,,,,0'
        else:
            clip = f'+CLIP: "{c.number}",145,"",0,"",0'
        return ring + line(clip)

    def _answer(self) -> bytes:
        assert self.call is not None
        self.call.state, self.call.started = "active", time.monotonic()
        if self.key == "huawei":
            return line("^CONN:1,0") + OK  # ^CONN before OK (chan_dongle note)
        if self.key == "simcom":
            return OK + line("VOICE CALL: BEGIN")
        if self.key == "quectel":
            self.sim.start_audio()
            return OK + self._dsci(self.call, 3)
        return OK

    def _calls(self, up: str, text: str) -> bytes | None:
        prof = self.sim.profile
        if up in (prof.answer.upper(), "ATA"):
            return self._answer() if self.call and self.call.state == "ringing" else line("NO CARRIER")
        if up in ("AT+CHUP", "ATH", "ATH0"):
            return OK + self._ended(local=True)
        m = re.fullmatch(r"AT(?:\+QPCMV=0;\+QPCMV=1,0;)?D([+\d*#]+)(I?)G?;", up)  # I: CLIR (27.007 6.2)
        if m:
            if self.call is not None:
                return line("+CME ERROR: 3")  # one call at a time in this model
            self.call = SimCall("out", m.group(1), 0, "dialing", clir=bool(m.group(2)))
            self.sim.outgoing_call(self.call)
            if self.key == "huawei":
                return OK + line("^ORIG:1,0")
            if self.clcc_urc:
                return OK + self.clcc(self.call, 2)
            return OK + self._dsci(self.call, 2)
        if up == "AT+CLCC":
            c = self.call
            if c is None:
                return OK
            stat = {"active": 0, "dialing": 2, "alerting": 3, "ringing": 4}[c.state]
            return self.info(self.clcc(c, stat).strip().decode())
        if up == "AT+CPCMREG=1" and self.key == "simcom":
            if self.cpcmreg_failures > 0:
                self.cpcmreg_failures -= 1
                return line("ERROR")
            self.sim.start_audio()
            return OK
        if up == "AT+CPCMREG=0" and self.key == "simcom" or up == "AT+QPCMV=0" and self.key == "quectel":
            self.sim.stop_audio()
            return OK
        if up.startswith("AT+VTS") or up.startswith("AT+DDET") or up == "AT+QTONEDET=1" and self.key == "quectel":
            return OK
        return None

    def clcc(self, c: SimCall, stat: int) -> bytes:
        return line(f'+CLCC: 1,{0 if c.direction == "out" else 1},{stat},0,0,"{c.number or ""}",145')

    def _clcc_urc(self, c: SimCall, stat: int) -> bytes:
        return self.clcc(c, stat) if self.clcc_urc and c.direction == "out" else b""

    def _dsci(self, c: SimCall, stat: int) -> bytes:
        """Quectel ``^DSCI`` numbering (modems.md A.7): 2 originating, 3 connected, 4 incoming, 6 released;
        the number unquoted."""
        if not self.dsci:
            return b""
        number = c.number or ""
        toa = 145 if number.startswith("+") else 129
        return line(f'^DSCI: 1,{0 if c.direction == "out" else 1},{stat},0,{number},{toa}')

    def remote_alerting(self) -> bytes:
        """The callee's phone rings (ringback to us): Huawei ^CONF, SIMCom +CLCC stat 3, others nothing
        (a +CLCC poll shows stat 3)."""
        c = self.call
        if c is None or c.state != "dialing":
            return b""
        c.state = "alerting"
        if self.key == "huawei":
            return line("^CONF:1")
        return self._clcc_urc(c, 3)

    def dial_failed(self, outcome: str) -> bytes:
        """An outgoing call fails before the answer: busy / no_answer / unreachable."""
        c, self.call = self.call, None
        if c is None:
            return b""
        if self.key == "huawei":
            cause = {"busy": 17, "no_answer": 19}.get(outcome, 1)  # 1: unassigned number
            return line(f"^CEND:1,0,104,{cause}")
        final = {"busy": "BUSY", "no_answer": "NO ANSWER"}.get(outcome, "NO CARRIER")
        return self._dsci(c, 6) + line(final) + self._clcc_urc(c, 6)  # +CLCC after the final code; ^DSCI before

    def remote_answer(self) -> bytes:
        if self.call is None:
            return b""
        self.call.state, self.call.started = "active", time.monotonic()
        if self.key == "huawei":
            return line("^CONN:1,0")
        if self.key == "simcom":
            return line("VOICE CALL: BEGIN") + self._clcc_urc(self.call, 0)
        if self.key == "quectel":
            self.sim.start_audio()
            return self._dsci(self.call, 3)
        return b""

    def remote_hangup(self) -> bytes:
        return self._ended(local=False)

    def dtmf_urc(self, digit: str) -> bytes:
        """The far end pressed ``digit``: the profile's DTMF URC (modems.md A.8), e.g. SIMCom
        ``+RXDTMF: 5``, Quectel ``+QTONEDET: 53`` (the ASCII code), others ``+DTMF: 5``.
        Empty for a profile without one (Huawei): the tone is only in the call audio."""
        head = self.sim.profile.dtmf_urc
        if head is None:
            return b""
        return line(f"{head} {ord(digit)}" if head == "+QTONEDET:" else f"{head} {digit}")

    def _ended(self, *, local: bool) -> bytes:
        c, self.call = self.call, None
        self.sim.stop_audio()
        if c is None:
            return b""
        dur = int(time.monotonic() - c.started) if c.state == "active" else 0
        if self.key == "huawei":
            return line(f"^CEND:1,{dur},104,16")
        if self.key == "simcom" and c.state == "active":
            return (line(f"VOICE CALL: END: {dur:06d}") + (b"" if local else line("NO CARRIER"))
                    + self._clcc_urc(c, 6))
        return self._dsci(c, 6) + (b"" if local else line("NO CARRIER")) + self._clcc_urc(c, 6)
