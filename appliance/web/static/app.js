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
  bl.token = body.token;
  $("who").textContent = `${body.name} (${body.agent_id})`;
  show("login-view", false); show("console-view", true);
  connectSocket();
  loadConversations();
  connectAudio().catch((e) => { setAudio("failed", "audio failed: " + e.message); });
});

function connectSocket() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/api/ws?token=${encodeURIComponent(bl.token)}`);
  bl.ws = ws;
  ws.onopen = () => { $("conn").textContent = "online"; $("conn").classList.add("online"); };
  ws.onmessage = (m) => handle(JSON.parse(m.data));
  ws.onclose = (ev) => {
    $("conn").textContent = "offline"; $("conn").classList.remove("online");
    if (ev.code === 4001) { error("You logged in somewhere else."); return; }
    if (bl.token) setTimeout(connectSocket, RECONNECT_DELAY_MS);
  };
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
      if (msg.call) renderCall(msg.call);  // back on a call after a page reload
      break;
    case "state": renderState(msg.agent); break;
    case "offer": renderOffer(msg); break;
    case "offer_ended":
      if (bl.offer && bl.offer.call_id === msg.call_id) { bl.offer = null; show("offer", false); }
      if (msg.reason !== "answered") addHistory(`Offer ${msg.reason}`);
      break;
    case "call": renderCall(msg); break;
    case "error": error(msg.message); break;
    case "sms": addMessage(msg); break;
  }
}

function fillDispositions(list) {
  const sel = $("disposition");
  sel.innerHTML = '<option value="">(no disposition)</option>';
  for (const d of list) { const o = document.createElement("option"); o.value = d; o.textContent = d; sel.appendChild(o); }
}

function renderState(agent) {
  bl.agent = agent;
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
  if (agent.state !== "on_call") { show("call", false); clearInterval(bl.callTimer); }
}

function renderOffer(msg) {
  bl.offer = msg;
  error("");
  $("offer-caller").textContent = msg.caller || "withheld";
  $("offer-name").textContent = msg.caller_name ? `(${msg.caller_name})` : "";
  $("offer-queue").textContent = msg.queue;
  $("offer-wait").textContent = msg.waited_s;
  show("offer-customer", !!msg.customer_id);
  $("offer-customer-name").textContent = msg.customer_name || "known caller";
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
  if (msg.state === "on_call") {
    bl.call = msg;
    $("call-caller").textContent = msg.caller || "withheld";
    $("call-name").textContent = msg.caller_name ? `(${msg.caller_name})` : "";
    show("call-recording", !!msg.recording);
    show("call", true);
    clearInterval(bl.callTimer);
    const start = msg.since;
    const tick = () => { const s = Math.round(Date.now() / 1000 - start); $("call-timer").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; };
    tick(); bl.callTimer = setInterval(tick, 1000);
  } else if (msg.state === "ended") {
    bl.call = null;
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
$("btn-pause").onclick = () => send("pause", {reason: $("pause-reason").value});
$("btn-answer").onclick = () => bl.offer && send("answer", {call_id: bl.offer.call_id});
$("btn-reject").onclick = () => bl.offer && send("reject", {call_id: bl.offer.call_id});
$("btn-hangup").onclick = () => send("hangup");
$("btn-wrapup-done").onclick = () => send("wrapup", {disposition: $("disposition").value});
$("btn-logout").onclick = () => {
  send("logout");
  bl.token = null;
  if (bl.pc) bl.pc.close();
  if (bl.stream) bl.stream.getTracks().forEach((t) => t.stop());
  show("console-view", false); show("login-view", true);
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
