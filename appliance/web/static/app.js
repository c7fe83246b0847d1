// Branchline agent console. No build step: plain browser JavaScript.
"use strict";

const $ = (id) => document.getElementById(id);
const ICE_GATHER_TIMEOUT_MS = 5000;  // non-trickle signalling: send the offer after gathering or this
const RECONNECT_DELAY_MS = 2000;
const AUDIO_RETRY_MS = 2000;

const bl = {
  token: null, agent: null, ws: null, pc: null, stream: null,
  offer: null, call: null, wrapupTimer: null, callTimer: null, events: [],
  conversations: new Map(), openThread: null,
  colleagues: new Map(), transferQueues: [], transfer: null,
};
window.bl = bl;  // for the browser tests and for debugging

function show(id, visible) { $(id).hidden = !visible; }
function error(msg) { $("console-error").textContent = msg || ""; }

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const res = await fetch("/api/login", {
    method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({agent_id: $("agent-id").value.trim(), password: $("password").value}),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) { $("login-error").textContent = body.error || `login failed (${res.status})`; return; }
  startSession(body);
});

// a page reload keeps the log-in: the token lives in this tab's sessionStorage (not across tabs)
function startSession(body) {
  bl.token = body.token;
  sessionStorage.setItem("branchline", JSON.stringify({token: body.token, name: body.name, agent_id: body.agent_id}));
  $("who").textContent = `${body.name} (${body.agent_id})`;
  $("login-error").textContent = ""; error("");
  show("login-view", false); show("console-view", true);
  connectSocket();
  loadConversations();
  connectAudio().catch((e) => { setAudio("failed", "audio failed: " + e.message); });
}

(async function resumeSession() {
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem("branchline") || "null"); } catch (e) { saved = null; }
  if (!saved || !saved.token) return;
  const res = await fetch("/api/conversations", {headers: {"authorization": "Bearer " + saved.token}}).catch(() => null);
  if (res && res.ok) startSession(saved);
  else sessionStorage.removeItem("branchline");  // the box restarted or the log-in ended
})();

function connectSocket() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/api/ws?token=${encodeURIComponent(bl.token)}`);
  bl.ws = ws;
  ws.onopen = () => { $("conn").textContent = "online"; $("conn").classList.add("online"); };
  ws.onmessage = (m) => handle(JSON.parse(m.data));
  ws.onclose = (ev) => {
    $("conn").textContent = "offline"; $("conn").classList.remove("online");
    if (ev.code === 4001) { error("You logged in somewhere else."); return; }
    if (ev.code === 4003) {  // the site admin changed the password or removed the agent
      endSession();
      $("login-error").textContent = (ev.reason || "your log-in was ended") + ". Please log in again.";
      return;
    }
    if (bl.token) setTimeout(reconnectOrLogIn, RECONNECT_DELAY_MS);
  };
}

// the socket dropped: the box may only be busy, or it restarted and forgot this log-in
async function reconnectOrLogIn() {
  if (!bl.token) return;
  let res = null;
  try {
    res = await fetch("/api/conversations", {headers: {"authorization": "Bearer " + bl.token}});
  } catch (e) {
    setTimeout(reconnectOrLogIn, RECONNECT_DELAY_MS);  // the box is not answering yet
    return;
  }
  if (res.status === 401) {
    endSession();
    $("login-error").textContent = "The box restarted or your session ended. Please log in again.";
    return;
  }
  connectSocket();
  if (!bl.pc || ["failed", "closed", "disconnected"].includes(bl.pc.connectionState)) {
    connectAudio().catch((e) => setAudio("failed", "audio failed: " + e.message));
  }
}

function endSession() {
  bl.token = null;
  sessionStorage.removeItem("branchline");
  error("");
  $("conn").textContent = "offline"; $("conn").classList.remove("online");
  if (bl.pc) bl.pc.close();
  if (bl.stream) bl.stream.getTracks().forEach((t) => t.stop());
  bl.pc = null; bl.stream = null; bl.call = null; bl.offer = null;
  clearInterval(bl.callTimer); clearInterval(bl.wrapupTimer);
  show("console-view", false); show("login-view", true);
}

function send(op, extra) {
  if (bl.ws && bl.ws.readyState === WebSocket.OPEN) bl.ws.send(JSON.stringify({op, ...extra}));
}

function setAudio(state, text) { $("audio-status").dataset.state = state; $("audio-status").textContent = text; }

async function waitForGathering(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, ICE_GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

async function connectAudio() {
  setAudio("connecting", "connecting…");
  if (bl.pc) bl.pc.close();
  if (!bl.stream) bl.stream = await navigator.mediaDevices.getUserMedia({audio: true, video: false});
  const pc = new RTCPeerConnection({iceServers: [], bundlePolicy: "max-bundle"});
  bl.pc = pc;
  bl.stream.getTracks().forEach((t) => pc.addTrack(t, bl.stream));
  pc.ontrack = (e) => { const a = $("remote-audio"); a.srcObject = e.streams[0] || new MediaStream([e.track]); a.play().catch(() => {}); };
  pc.onconnectionstatechange = () => {
    const s = pc.connectionState;
    setAudio(s, s === "connected" ? "connected" : s);
    // a dropped audio path comes back by itself; the box holds the caller meanwhile
    if ((s === "failed" || s === "disconnected") && bl.pc === pc && bl.token) {
      setTimeout(() => { if (bl.pc === pc && bl.token) connectAudio().catch((e) => setAudio("failed", "audio failed: " + e.message)); },
                 AUDIO_RETRY_MS);
    }
  };
  await pc.setLocalDescription(await pc.createOffer());
  await waitForGathering(pc);
  const res = await fetch("/api/rtc", {
    method: "POST",
    headers: {"content-type": "application/json", "authorization": "Bearer " + bl.token},
    body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type}),
  });
  if (!res.ok) throw new Error(await res.text());
  await pc.setRemoteDescription(await res.json());
}

bl.stats = async function () {
  const out = {inboundAudio: null};
  if (!bl.pc) return out;
  (await bl.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      out.inboundAudio = {packetsReceived: r.packetsReceived, totalAudioEnergy: r.totalAudioEnergy, packetsLost: r.packetsLost};
    }
  });
  return out;
};

function handle(msg) {
  bl.events.push(msg);
  switch (msg.type) {
    case "hello":
      fillDispositions(msg.dispositions);
      renderState(msg.agent);
      renderDevice(msg);
      bl.colleagues = new Map((msg.agents || []).map((a) => [a.agent_id, a]));
      bl.transferQueues = msg.transfer_queues || [];
      renderTransferPickers();
      if (msg.call) renderCall(msg.call);  // back on a call after a page reload
      if (msg.transfer) renderTransfer(msg.transfer);  // ... and in the middle of a transfer
      break;
    case "agents":
      for (const a of msg.agents) bl.colleagues.set(a.agent_id, a);
      renderTransferPickers();
      break;
    case "transfer": renderTransfer(msg); break;
    case "device": $("device").value = msg.device; bl.device = msg.device; break;
    case "state": renderState(msg.agent); break;
    case "offer": renderOffer(msg); break;
    case "offer_ended":
      if (bl.offer && bl.offer.call_id === msg.call_id) { bl.offer = null; show("offer", false); }
      if (msg.reason !== "answered") addHistory(`Offer ${msg.reason}`);
      break;
    case "call": renderCall(msg); break;
    case "error": error(msg.message); break;
    case "logged_out": endSession(); break;
    case "sms": addMessage(msg); break;
  }
}

function fillDispositions(list) {
  const sel = $("disposition");
  sel.innerHTML = '<option value="">(no disposition)</option>';
  for (const d of list) { const o = document.createElement("option"); o.value = d; o.textContent = d; sel.appendChild(o); }
}

function renderState(agent) {
  const wasWrapUp = bl.agent && bl.agent.state === "wrap_up";
  bl.agent = agent;
  if (agent.state === "wrap_up" && !wasWrapUp) $("disposition").value = "";  // each call gets its own
  $("state").textContent = agent.state.replace("_", " ");
  $("state").dataset.state = agent.state;
  $("state-detail").textContent = agent.pause_reason ? `(${agent.pause_reason})` : "";
  show("wrapup", agent.state === "wrap_up");
  clearInterval(bl.wrapupTimer);
  if (agent.state === "wrap_up" && agent.wrapup_deadline) {
    const tick = () => { $("wrapup-left").textContent = Math.max(0, Math.round(agent.wrapup_deadline - Date.now() / 1000)); };
    tick(); bl.wrapupTimer = setInterval(tick, 1000);
  }
  if (agent.state !== "reserved") show("offer", false);
  if (agent.state !== "on_call") {
    if (bl.call) { bl.call = null; setMuted(false); }  // the call is over for this agent (hang-up, transfer)
    show("call", false); clearInterval(bl.callTimer);
    show("consulted", false); show("consult-box", false); show("transfer-box", true);
  }
  show("dial-form", bl.canDial && (agent.state === "available" || agent.state === "paused"));
}

function renderDevice(hello) {
  bl.canDial = !!hello.can_dial;
  show("dial-form", bl.canDial && ["available", "paused"].includes(hello.agent.state));
  show("device-row", !!hello.phone);
  if (hello.phone) {
    $("device").options[1].textContent = `my desk phone (extension ${hello.phone})`;
    $("device").value = hello.device || "browser";
  }
  bl.device = hello.device || "browser";
}

function renderOffer(msg) {
  bl.offer = msg;
  error("");
  $("offer-caller").textContent = msg.caller || "withheld";
  $("offer-name").textContent = msg.caller_name ? `(${msg.caller_name})` : "";
  $("offer-queue").textContent = msg.queue;
  $("offer-wait").textContent = msg.waited_s;
  const from = msg.from_agent_name || msg.from_agent;
  $("offer-from").textContent = msg.kind === "consult" ? `${from} is consulting you about ${msg.caller || "a withheld number"}`
    : msg.kind === "transfer" ? `Transfer from ${from}` : "";
  $("offer-from").dataset.kind = msg.kind || "call";
  show("offer-from", msg.kind === "consult" || msg.kind === "transfer");
  show("offer-customer", !!msg.customer_id);
  $("offer-customer-name").textContent = msg.customer_name || ((msg.history || []).length ? "known caller" : "new caller");
  const hist = $("offer-history");
  hist.innerHTML = "";
  for (const h of msg.history || []) {
    const li = document.createElement("li");
    li.className = "history-item";
    li.textContent = `${new Date(h.at * 1000).toLocaleString()} · ${h.kind} · ${h.summary}`;
    hist.appendChild(li);
  }
  if (msg.customer_id && !(msg.history || []).length) hist.innerHTML = "<li>first contact</li>";
  show("offer", true);
}

function renderCall(msg) {
  if (msg.state === "on_call" || msg.state === "dialing") {
    bl.call = msg;
    $("call-title").textContent = msg.state === "dialing" ? "Calling…" : (msg.direction === "outbound" ? "On call (outbound)" : "On call");
    $("call-caller").textContent = msg.caller || "withheld";
    $("call-name").textContent = msg.caller_name ? `(${msg.caller_name})` : "";
    show("call-recording", !!msg.recording);
    show("call-held", !!msg.on_hold);
    $("btn-hold").textContent = msg.on_hold ? "Resume" : "Hold";
    $("btn-hold").disabled = msg.state !== "on_call";
    $("btn-mute").hidden = bl.device === "phone";  // a desk phone has its own mute key
    show("keypad", msg.keys !== false && msg.state === "on_call");  // an analog line cannot send keys
    show("consulted", false);  // a consult that became a transfer: the caller is ours now
    show("call", true);
    clearInterval(bl.callTimer);
    const start = msg.since;
    const tick = () => { const s = Math.round(Date.now() / 1000 - start); $("call-timer").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; };
    tick(); bl.callTimer = setInterval(tick, 1000);
  } else if (msg.state === "ended") {
    bl.call = null;
    setMuted(false);
    error("");  // an error about that call ("this line cannot send keys") no longer applies
    show("call", false);
    clearInterval(bl.callTimer);
    addHistory(`Call with ${msg.caller || "withheld"} ended: ${msg.cause || ""}`);
  }
}

function addHistory(text) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("history").prepend(li);
}

$("btn-available").onclick = () => send("available");

// --- transfer -----------------------------------------------------------------------------
function fillSelect(sel, placeholder, items) {
  const keep = sel.value;
  sel.innerHTML = "";
  const none = document.createElement("option"); none.value = ""; none.textContent = placeholder; sel.appendChild(none);
  for (const [value, label] of items) { const o = document.createElement("option"); o.value = value; o.textContent = label; sel.appendChild(o); }
  sel.value = items.some(([v]) => v === keep) ? keep : "";
}

function renderTransferPickers() {
  const mine = new Set((bl.agent && bl.agent.queues) || []);
  const agents = [...bl.colleagues.values()]
    .filter((a) => a.state === "available" && (a.queues || []).some((q) => mine.has(q)))
    .map((a) => [a.agent_id, a.name]);
  fillSelect($("transfer-agent"), "(choose an available agent)", agents);
  fillSelect($("transfer-queue"), "(choose a queue)", bl.transferQueues.map((q) => [q.id, q.name]));
}

function transferTarget() {
  if ($("transfer-agent").value) return {agent: $("transfer-agent").value};
  if ($("transfer-queue").value) return {queue: $("transfer-queue").value};
  if ($("transfer-number").value.trim()) return {number: $("transfer-number").value.trim()};
  return null;
}

const CONSULT_STATES = ["consult_ringing", "consulting", "held", "dialing"];
function renderTransfer(msg) {
  bl.transfer = msg;
  if (msg.role === "to") {  // we are the consulted agent
    show("consulted", msg.state === "consulting");
    $("consulted-status").textContent = msg.message;
    if (msg.state !== "consulting") addHistory(msg.message);
    return;
  }
  const busy = CONSULT_STATES.includes(msg.state);
  show("consult-box", busy);
  show("transfer-box", !busy);
  $("consult-box").dataset.state = msg.state;
  $("consult-status").textContent = msg.message;
  show("btn-complete", msg.state === "consulting");
  show("btn-cancel-consult", ["consult_ringing", "consulting", "held"].includes(msg.state));
  show("btn-retrieve", ["held", "dialing"].includes(msg.state));
  if (msg.state === "failed") error(msg.message);
  if (!busy) addHistory(msg.message);
}

$("transfer-agent").onchange = () => { if ($("transfer-agent").value) { $("transfer-queue").value = ""; $("transfer-number").value = ""; } };
$("transfer-queue").onchange = () => { if ($("transfer-queue").value) { $("transfer-agent").value = ""; $("transfer-number").value = ""; } };
$("transfer-number").oninput = () => { $("transfer-agent").value = ""; $("transfer-queue").value = ""; };
$("btn-blind").onclick = () => {
  const to = transferTarget();
  if (!bl.call || !to) { error("Choose an agent, a queue or a number to transfer to"); return; }
  error(""); send("transfer", {call_id: bl.call.call_id, to});
};
$("btn-consult").onclick = () => {
  if (!bl.call || !$("transfer-agent").value) { error("Choose an available agent to consult"); return; }
  error(""); send("consult", {call_id: bl.call.call_id, agent: $("transfer-agent").value});
};
$("btn-complete").onclick = () => bl.call && send("complete_transfer", {call_id: bl.call.call_id});
$("btn-cancel-consult").onclick = () => bl.call && send("cancel_consult", {call_id: bl.call.call_id});
$("btn-retrieve").onclick = () => bl.call && send("retrieve", {call_id: bl.call.call_id});
$("btn-consulted-hangup").onclick = () => send("hangup");
$("device").onchange = () => send("device", {device: $("device").value});
$("dial-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const number = $("dial-number").value.trim();
  if (!number) { error("Type the number to call"); return; }
  error("");
  send("dial", {number});
});
$("btn-pause").onclick = () => send("pause", {reason: $("pause-reason").value});
$("btn-answer").onclick = () => bl.offer && send("answer", {call_id: bl.offer.call_id});
$("btn-reject").onclick = () => bl.offer && send("reject", {call_id: bl.offer.call_id});
$("btn-hangup").onclick = () => send("hangup");
$("btn-hold").onclick = () => bl.call && send(bl.call.on_hold ? "resume" : "hold");
$("btn-mute").onclick = () => setMuted($("btn-mute").getAttribute("aria-pressed") !== "true");
for (const key of document.querySelectorAll("#keypad button")) {
  key.onclick = () => { if (bl.call) { error(""); send("keys", {digits: key.dataset.key}); } };
}

// the caller stops hearing this browser's microphone; the box goes on recording what it gets (silence)
function setMuted(muted) {
  if (bl.stream) bl.stream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  $("btn-mute").setAttribute("aria-pressed", String(muted));
  $("btn-mute").textContent = muted ? "Unmute" : "Mute";
}
$("btn-wrapup-done").onclick = () => send("wrapup", {disposition: $("disposition").value});
$("btn-logout").onclick = () => {
  if (bl.ws && bl.ws.readyState === WebSocket.OPEN) send("logout");  // the page leaves on "logged_out"
  else endSession();  // the box is gone anyway
};

// --- SMS inbox -------------------------------------------------------------------------
async function loadConversations() {
  const res = await fetch("/api/conversations", {headers: {"authorization": "Bearer " + bl.token}});
  if (!res.ok) return;
  const body = await res.json();
  for (const c of body.conversations) {
    bl.conversations.set(c.conversation_id, {number: c.number, messages: c.messages});
  }
  renderConversations();
}

function addMessage(m) {
  let conv = bl.conversations.get(m.conversation_id);
  if (!conv) { conv = {number: m.number, messages: []}; bl.conversations.set(m.conversation_id, conv); }
  if (!conv.messages.some((x) => x.key === m.key)) conv.messages.push(m);
  renderConversations();
  if (bl.openThread === m.conversation_id) renderThread();
}

function renderConversations() {
  const ul = $("conversations");
  ul.innerHTML = "";
  const convs = [...bl.conversations.entries()].sort((a, b) => lastAt(b[1]) - lastAt(a[1]));
  for (const [id, c] of convs) {
    const li = document.createElement("li");
    li.className = "conversation";
    li.dataset.id = id;
    const last = c.messages[c.messages.length - 1];
    li.textContent = `${c.number}: ${last ? last.body.slice(0, 60) : ""}`;
    li.onclick = () => { bl.openThread = id; renderThread(); };
    ul.appendChild(li);
  }
}

function lastAt(c) { return c.messages.length ? c.messages[c.messages.length - 1].at : 0; }

function renderThread() {
  const c = bl.conversations.get(bl.openThread);
  if (!c) return;
  show("thread", true);
  $("thread-number").textContent = c.number;
  const ol = $("thread-messages");
  ol.innerHTML = "";
  for (const m of c.messages) {
    const li = document.createElement("li");
    li.className = `message ${m.direction} ${m.status || ""}`;
    li.textContent = `${m.direction === "in" ? "◀" : "▶"} ${m.body}`;
    ol.appendChild(li);
  }
}

$("reply-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const c = bl.conversations.get(bl.openThread);
  const text = $("reply-text").value.trim();
  if (!c || !text) return;
  send("sms_reply", {number: c.number, text});
  $("reply-text").value = "";
});
