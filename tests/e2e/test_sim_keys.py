"""End to end: ``run.py sim keys`` lets a newcomer try an IVR menu on the demo box.

The box runs as its own process with its built-in simulated Huawei GSM modem; an ``[[inbound]]``
rule sends GSM calls to menu ``main``. ``run.py sim call gsm`` rings, the menu answers, and
``run.py sim keys gsm 2`` makes the simulated caller press 2 (in-band: Huawei has no DTMF URC, so
the tone travels in the call audio and the box's detector hears it). The caller reaches queue
``sales``, where the only agent logged in to sales answers over the console WebSocket.
"""
from __future__ import annotations

from pathlib import Path

from appliance.api.client import SocketClient
from tests.e2e.test_ivr_menu import AGENTS
from tests.e2e.test_ivr_menu import MENU as IVR_MENU
from tests.e2e.test_queue_raw_sip import ConsoleAgent, stored_calls
from tests.e2e.test_simulated_lines import sim_cli
from tests.support.box import running_box

# the SIP IVR test's agents (carol: sales only) and menu, reached by line instead of by called number
MENU = IVR_MENU.replace('called = "help"', 'line = "gsm"')
assert 'line = "gsm"' in MENU


async def test_sim_keys_take_the_gsm_caller_through_the_menu_to_sales(tmp_path: Path) -> None:
    async with running_box(tmp_path, extra_config=MENU, agents=AGENTS, simulators="gsm = true\nanalog = false") as box:
        await box.wait_for_log(r"gsm:\d+ ready on", timeout=30)
        rc, out = await sim_cli(box, "keys", "gsm", "2")
        assert rc == 1 and "no simulated call on the gsm line" in out and "Traceback" not in out
        rc, out = await sim_cli(box, "keys", "gsm", "2x")
        assert rc == 2 and "is not DTMF keys" in out  # argparse refuses it before asking the box
        client = SocketClient(box.data_dir / "run")
        try:  # the local API checks the keys too
            status, text = await client.post_raw("/v1/sim/keys", {"line": "gsm", "digits": "2x"})
        finally:
            await client.close()
        assert status == 400 and "DTMF keys" in text

        agent = ConsoleAgent(box.web_url, "carol", "carol-pw")
        try:
            await agent.login()
            await agent.connect_audio()
            await agent.send("available")
            rc, out = await sim_cli(box, "call", "gsm", "--from", "+447700900125")
            assert rc == 0, out
            await box.wait_for_log(r"call \S+ .* -> menu main", timeout=15)
            await box.wait_for_log(r"gsm:\d+: call audio on", timeout=15)  # the menu answered
            rc, out = await sim_cli(box, "keys", "gsm", "2")
            assert rc == 0 and "presses 2" in out, out
            await box.wait_for_log(r"menu path main:2 -> queue sales", timeout=15)
            offer = await agent.next("offer")
            assert offer["caller"] == "+447700900125"
            await agent.send("answer", call_id=offer["call_id"])
            await agent.next("call", state="on_call")
            rc, _ = await sim_cli(box, "hangup", "gsm")
            assert rc == 0
            await agent.next("call", state="ended")
        finally:
            await agent.close()
        assert await box.stop() == 0
    calls = await stored_calls(box.data_dir)
    assert len(calls) == 1
    rec = calls[0]
    assert rec.line_id.startswith("gsm:") and rec.ivr == ("main:2",) and rec.queue == "sales"
    assert rec.agent_id == "carol"
