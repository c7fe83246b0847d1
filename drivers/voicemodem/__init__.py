"""Analog phone lines through USB voice modems (ITU-T V.253 / TIA IS-101).

Layers (style P1): ``dle`` (voice-mode DLE framing, pure) and ``callerid`` (pure),
``formats`` (sample-format choice and conversion), ``state`` (line state machine,
pure), ``profiles`` (chipset quirks as data); ``modem`` is the asyncio shell around
one port (voice data states, playback, dialling), ``setup`` brings it up, ``audio`` is
the call's ``LegAudio``, ``line`` hands calls to the appliance and dials out
(``outbound``: what answer supervision an analog line has), ``config`` reads
``[[analog]]`` tables.
"""
