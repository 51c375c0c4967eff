"""The page at `/`: one self-contained HTML file (no CDN, works offline) with a streaming chat with the
model, and the run's name, base model, recipe, eval table (base vs tuned) and loss curve (an inline
SVG). It holds no data itself: it reads `/ftcli/run` and calls `/v1/chat/completions`, sending the API
key typed into its key field when the server needs one."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ftcli serve</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:0;display:flex;gap:1rem;padding:1rem;background:#f6f6f4;color:#222}
main{flex:2;display:flex;flex-direction:column;min-width:0;height:calc(100vh - 2rem)}
aside{flex:1;min-width:0;overflow:auto}
h1{font-size:1.2rem;margin:.2rem 0} h2{font-size:1rem;margin:1rem 0 .3rem}
#log{flex:1;overflow:auto;background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem}
.msg{margin:.4rem 0;white-space:pre-wrap} .user{color:#0b4f9c} .assistant{color:#1d6b2a} .error{color:#b00}
form{display:flex;gap:.5rem;margin-top:.5rem} #input{flex:1;padding:.5rem} button{padding:.5rem 1rem}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}
pre{background:#fff;border:1px solid #ddd;padding:.5rem;max-height:20rem;overflow:auto;font-size:12px}
#keybox{display:none;margin:.5rem 0} .muted{color:#777}
</style></head><body>
<main>
  <h1 id="title">ftcli serve</h1>
  <div class="muted" id="subtitle"></div>
  <div id="keybox">API key: <input id="key" type="password" size="30"> <button id="savekey">use</button></div>
  <div id="log"></div>
  <form id="form"><input id="input" autocomplete="off" placeholder="Type a message…">
  <button id="send" type="submit">Send</button> <button id="reset" type="button">Reset</button></form>
</main>
<aside>
  <h2>Eval (base vs tuned)</h2><div id="eval" class="muted">no eval results (ftcli eval RUN)</div>
  <h2>Training loss</h2><div id="loss" class="muted">no loss curve</div>
  <h2>Recipe</h2><pre id="recipe" class="muted">no recipe (a model served with --model)</pre>
</aside>
<script>
"use strict";
let key = localStorage.getItem("ftcli-key") || "";
let model = null; const turns = [];
const $ = (id) => document.getElementById(id);
function headers() { const h = {"Content-Type": "application/json"}; if (key) h.Authorization = "Bearer " + key; return h; }
function say(role, text) { const d = document.createElement("div"); d.className = "msg " + role;
  d.textContent = text; $("log").appendChild(d); $("log").scrollTop = 1e9; return d; }
function fmt(v) { return v === null || v === undefined ? "" : (typeof v === "number" ? +v.toFixed(4) : String(v)); }
async function load() {
  const r = await fetch("/ftcli/run", {headers: headers()});
  if (r.status === 401) { $("keybox").style.display = "block"; return; }
  const info = await r.json(); model = info.name;
  $("title").textContent = info.name + (info.serving_base ? " (base model)" : "");
  $("subtitle").textContent = "base model: " + (info.base_model || "?") + (info.run_dir ? " · run: " + info.run_dir : "");
  if (info.recipe) { $("recipe").textContent = info.recipe; $("recipe").className = ""; }
  if (info.eval.length) {
    let h = "<table id='evaltable'><tr><th>metric</th><th>base</th><th>tuned</th></tr>";
    for (const e of info.eval) h += "<tr><td>" + e.metric + "</td><td>" + fmt(e.base) + "</td><td>" + fmt(e.tuned) + "</td></tr>";
    $("eval").innerHTML = h + "</table>"; $("eval").className = "";
  }
  if (info.loss.length > 1) drawLoss(info.loss);
}
function drawLoss(points) {
  const W = 320, H = 160, P = 30, xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => P + (x - x0) / ((x1 - x0) || 1) * (W - 2 * P), sy = (y) => H - P - (y - y0) / ((y1 - y0) || 1) * (H - 2 * P);
  const path = points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
  $("loss").innerHTML = "<svg id='losssvg' width='" + W + "' height='" + H + "' style='background:#fff;border:1px solid #ddd'>"
    + "<path d='" + path + "' fill='none' stroke='#1d6b2a' stroke-width='2'/>"
    + "<text x='2' y='" + (P - 8) + "' font-size='11'>" + fmt(y1) + "</text><text x='2' y='" + (H - P + 4) + "' font-size='11'>" + fmt(y0) + "</text>"
    + "<text x='" + P + "' y='" + (H - 8) + "' font-size='11'>step " + x0 + "</text><text x='" + (W - P - 40) + "' y='" + (H - 8) + "' font-size='11'>step " + x1 + "</text></svg>";
  $("loss").className = "";
}
async function send(text) {
  const messages = [];
  for (const [u, a] of turns) messages.push({role: "user", content: u}, {role: "assistant", content: a});
  messages.push({role: "user", content: text});
  say("user", text); const out = say("assistant", ""); out.id = "streaming";
  const r = await fetch("/v1/chat/completions", {method: "POST", headers: headers(),
    body: JSON.stringify({model: model, messages: messages, stream: true})});
  if (!r.ok) { const e = await r.json().catch(() => ({})); out.className = "msg error";
    out.textContent = (e.error && e.error.message) || ("HTTP " + r.status); out.id = ""; return; }
  const reader = r.body.getReader(), dec = new TextDecoder(); let buf = "", reply = "";
  for (;;) {
    const {value, done} = await reader.read(); if (done) break;
    buf += dec.decode(value, {stream: true}); let i;
    while ((i = buf.indexOf("\\n\\n")) >= 0) {
      const line = buf.slice(0, i).trim(); buf = buf.slice(i + 2);
      if (!line.startsWith("data: ")) continue; const data = line.slice(6);
      if (data === "[DONE]") continue; const obj = JSON.parse(data);
      if (obj.error) { out.className = "msg error"; out.textContent = obj.error.message; continue; }
      const d = obj.choices[0] && obj.choices[0].delta; if (d && d.content) { reply += d.content; out.textContent = reply; }
    }
  }
  out.id = ""; out.dataset.done = "1"; turns.push([text, reply]);
}
$("form").addEventListener("submit", (ev) => { ev.preventDefault(); const t = $("input").value.trim();
  if (!t || !model) return; $("input").value = ""; send(t); });
$("reset").addEventListener("click", () => { turns.length = 0; $("log").innerHTML = ""; });
$("savekey").addEventListener("click", () => { key = $("key").value; localStorage.setItem("ftcli-key", key);
  $("keybox").style.display = "none"; load(); });
load();
</script></body></html>
"""
