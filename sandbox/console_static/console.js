// The sandbox console: renders the state the server streams (server-sent events) and posts
// what the customer and the agent do. User text is only ever set as textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const ATTRS = ["Source", "ProfileUrl", "InstagramUsername", "FollowerCount", "FollowerTier", "FollowsBusiness"];
const RELAY_OWN = new Set([...ATTRS, "EventType", "InstagramUserId", "Spam", "SpamRule", "LoopSuspected", "Standby"]);
let state = { customers: [], threads: {}, conversations: [] };
const articles = new Map(); // customer id -> conversation element (kept, so forms keep their input)

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function post(path, body, errorBox) {
  errorBox.textContent = "";
  try {
    const resp = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await resp.json();
    if (!resp.ok) errorBox.textContent = answer.error || `HTTP ${resp.status}`;
    else if (answer.relay >= 400) errorBox.textContent = `the relay answered ${answer.relay}: ${answer.answer}`;
    return resp.ok;
  } catch (err) {
    errorBox.textContent = `not sent: ${err}`;
    return false;
  }
}

function who() { return $("who").value; }

function customer(action, text) {
  return post(`api/customer/${action}`, { customer: who(), text: text || "", hoursAgo: Number($("dm-age").value) }, $("customer-error"));
}

function renderCustomers() {
  const select = $("who");
  if (select.options.length === state.customers.length) return;
  const chosen = select.value;
  select.replaceChildren(...state.customers.map((c) => {
    const option = el("option", "", `${c.name} (@${c.username})`);
    option.value = c.id;
    return option;
  }));
  if (chosen) select.value = chosen;
}

function renderThread() {
  const items = state.threads[who()] || [];
  $("thread").replaceChildren(...items.map((item) => {
    const li = el("li", item.who);
    li.append(el("span", "text", item.text));
    if (item.private) li.append(el("small", "note", " (private reply to your comment)"));
    if (item.quickReplies && item.quickReplies.length) {
      const row = el("div", "row");
      for (const title of item.quickReplies) {
        const button = el("button", "qr", title);
        button.type = "button";
        button.addEventListener("click", () => customer("tap", title));
        row.append(button);
      }
      li.append(row);
    }
    return li;
  }));
}

function hms(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return `${h} h ${String(m).padStart(2, "0")} min ${String(s % 60).padStart(2, "0")} s`;
}

function clockText(conv) {
  const now = Date.now();
  const w = conv.window;
  let text = "24-hour window: ";
  if (w.closesMs === null) text += "no customer message yet";
  else if (w.closesMs > now) text += `open, closes in ${hms(w.closesMs - now)}`;
  else if (w.tagClosesMs > now) text += `closed; a person may still reply with the HUMAN_AGENT tag for ${hms(w.tagClosesMs - now)}`;
  else text += "closed; the customer must write again";
  const sla = conv.sla;
  let slaText = " · SLA: ";
  if (sla.state === "escalated") slaText += `escalated, priority ${sla.priority}`;
  else if (sla.state === "waiting") slaText += sla.escalatesMs > now ? `waiting, escalates in ${hms(sla.escalatesMs - now)}` : "waiting, escalation due";
  else slaText += "answered";
  return [text, slaText, sla.state === "escalated"];
}

function conversationArticle(conv) {
  let article = articles.get(conv.customer);
  if (article) return article;
  article = $("conversation-template").content.firstElementChild.cloneNode(true);
  const id = conv.customer;
  article.dataset.customer = id;
  const text = article.querySelector(".reply-text");
  text.id = `reply-${id}`;
  article.querySelector(".reply-label").htmlFor = text.id;
  const quick = article.querySelector(".reply-quick");
  quick.id = `quick-${id}`;
  article.querySelector(".qr-label").htmlFor = quick.id;
  const form = article.querySelector(".reply-form");
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const quickReplies = quick.value.split(",").map((q) => q.trim()).filter(Boolean);
    const from = article.querySelector(".reply-bot").checked ? "Bot" : "Human";
    if (await post("api/agent/reply", { customer: id, text: text.value, quickReplies, from }, $("agent-error"))) {
      text.value = "";
      quick.value = "";
    }
  });
  articles.set(id, article);
  $("conversations").prepend(article); // the newest conversation on top
  return article;
}

function renderConversations() {
  $("no-conversations").hidden = state.conversations.length > 0;
  for (const conv of state.conversations) {
    const article = conversationArticle(conv);
    const attrs = conv.attributes || {};
    article.querySelector(".conv-title").textContent = `@${attrs.InstagramUsername || conv.customer} · conversation ${conv.conversationId.slice(0, 8)}`;
    const keys = [...ATTRS.filter((k) => k in attrs), ...Object.keys(attrs).filter((k) => !RELAY_OWN.has(k)).sort()];
    const dl = article.querySelector(".attrs");
    dl.replaceChildren(...keys.flatMap((k) => {
      const dd = el("dd", "", attrs[k]);
      dd.dataset.attr = k;
      return [el("dt", "", k), dd];
    }));
    renderClock(article, conv);
    article.querySelector(".items").replaceChildren(...conv.items.map((item) => {
      const li = el("li", item.direction);
      if (item.direction === "in") {
        const what = item.structured ? "↩ answered a quick reply: " : "";
        const media = item.attachments.length ? ` [${item.attachments.join(", ")}]` : "";
        li.append(el("span", "text", `${what}${item.text}${media}`), el("small", "source", ` · ${item.source}`));
      } else {
        li.append(el("span", "text", item.text));
        if (item.quickReplies.length) li.append(el("small", "note", ` · quick replies: ${item.quickReplies.join(" | ")}`));
        if (item.from === "Bot") li.append(el("small", "note", " · bot"));
        const receipt = el("span", `receipt ${item.receipt}`, item.receipt + (item.reason ? ` — ${item.reason}` : ""));
        li.append(receipt);
      }
      return li;
    }));
  }
}

function renderClock(article, conv) {
  const [text, slaText, escalated] = clockText(conv);
  const clock = article.querySelector(".clock");
  const sla = el("span", escalated ? "sla-escalated" : "sla", slaText);
  clock.replaceChildren(el("span", "window", text), sla);
}

function render() {
  renderCustomers();
  renderThread();
  renderConversations();
}

function connect() {
  const source = new EventSource("events");
  source.onopen = () => { $("live").textContent = "● live"; };
  source.onerror = () => { $("live").textContent = "reconnecting…"; };
  source.onmessage = (event) => { state = JSON.parse(event.data); render(); };
}

document.addEventListener("DOMContentLoaded", () => {
  $("who").addEventListener("change", renderThread);
  $("dm-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await customer("dm", $("dm-text").value)) $("dm-text").value = "";
  });
  $("comment-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await customer("comment", $("comment-text").value)) $("comment-text").value = "";
  });
  $("photo-send").addEventListener("click", () => customer("photo"));
  $("story-send").addEventListener("click", () => customer("story"));
  // The clocks tick between updates from the server.
  setInterval(() => {
    for (const conv of state.conversations) {
      const article = articles.get(conv.customer);
      if (article) renderClock(article, conv);
    }
  }, 1000);
  connect();
});
