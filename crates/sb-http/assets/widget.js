/*! Switchboard live-chat widget. Embed with:
 *  <script src="https://HOST/widget.js" data-website-token="TOKEN" async></script>
 * Self-contained: no dependencies, renders inside a Shadow DOM, talks to HOST/widget/v1 with a
 * bearer token (never cookies). All visitor/agent content is set with textContent. */
(function () {
  'use strict';
  if (window.Switchboard && window.Switchboard.__sb) return; // loaded twice

  // ---- Locate our own <script> tag, the server origin and the website token --------------------
  var script = document.currentScript || document.querySelector('script[data-website-token]');
  if (!script || !script.getAttribute('data-website-token')) {
    console.warn('[switchboard] widget.js: no data-website-token attribute found');
    return;
  }
  var WEBSITE_TOKEN = script.getAttribute('data-website-token');
  var ORIGIN = new URL(script.src, location.href).origin;
  var WS_ORIGIN = ORIGIN.replace(/^http/, 'ws'); // http -> ws, https -> wss
  var KEY_TOKEN = 'sb_widget_' + WEBSITE_TOKEN;
  var KEY_PENDING = 'sb_widget_pending_' + WEBSITE_TOKEN;

  // ---- Small helpers ---------------------------------------------------------------------------
  var store = {
    get(k) { try { return localStorage.getItem(k); } catch (e) { return null; } },
    set(k, v) { try { localStorage.setItem(k, v); } catch (e) { /* private mode */ } },
    del(k) { try { localStorage.removeItem(k); } catch (e) { /* ignore */ } },
  };
  function uuid() {
    if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    var b = new Uint8Array(16);
    if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    return Array.from(b, function (x) { return x.toString(16).padStart(2, '0'); }).join('');
  }
  function el(tag, attrs, text) {
    var n = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text != null) n.textContent = text;
    return n;
  }
  function fmtSize(n) {
    n = Number(n) || 0;
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
    return (n / 1024 / 1024).toFixed(1) + ' MB';
  }
  function fmtTime(iso) {
    var d = new Date(iso);
    return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }
  function jitter(ms) { return Math.round(ms * (0.75 + Math.random() * 0.5)); }

  // ---- State -----------------------------------------------------------------------------------
  var token = store.get(KEY_TOKEN);
  var visitorId = null;
  var expiresAt = 0;
  var settings = { title: 'Chat with us', welcome: '', prechat: false, hmac_mandatory: false,
    max_upload_bytes: 0, upload_types: [], handoff: [] };
  var customer = {};
  var lastSeq = 0;
  var entries = [];            // [{data: Message, el: HTMLElement}] sorted by sent_at, id
  var byId = new Map();        // server id -> entry
  var byEcho = new Map();      // echo_id -> entry
  var queue = loadQueue();     // unsent messages [{echo_id, text, attachment_ids, attachments, sent_at}]
  var listeners = {};
  var isOpen = false;
  var connected = false;
  var needSeen = false;
  var unread = 0;
  var prechatDone = false;

  function loadQueue() {
    try { var q = JSON.parse(store.get(KEY_PENDING) || '[]'); return Array.isArray(q) ? q : []; }
    catch (e) { return []; }
  }
  function saveQueue() {
    if (queue.length) store.set(KEY_PENDING, JSON.stringify(queue)); else store.del(KEY_PENDING);
  }
  function dequeue(echoId) {
    var n = queue.length;
    queue = queue.filter(function (q) { return q.echo_id !== echoId; });
    if (queue.length !== n) saveQueue();
  }
  function emit(ev, arg) {
    (listeners[ev] || []).slice().forEach(function (fn) {
      try { fn(arg); } catch (e) { console.error('[switchboard] listener error', e); }
    });
  }

  // ---- HTTP API --------------------------------------------------------------------------------
  function apiError(status, code, message) {
    var e = new Error(message); e.status = status; e.code = code; return e;
  }
  async function api(method, path, body, opt) {
    opt = opt || {};
    var headers = {};
    if (!opt.noAuth && token) headers.Authorization = 'Bearer ' + token;
    var payload;
    if (opt.raw) { payload = opt.raw; headers['Content-Type'] = opt.contentType || 'application/octet-stream'; }
    else if (body !== undefined) { payload = JSON.stringify(body); headers['Content-Type'] = 'application/json'; }
    var res;
    try {
      res = await fetch(ORIGIN + path, { method: method, headers: headers, body: payload,
        mode: 'cors', credentials: 'omit' });
    } catch (e) {
      throw apiError(0, 'network_error', 'Could not reach the server.');
    }
    var data = null;
    var text = await res.text().catch(function () { return ''; });
    if (text) { try { data = JSON.parse(text); } catch (e) { /* not JSON */ } }
    if (!res.ok) {
      var er = (data && data.error) || {};
      // The visitor token expired or was revoked: renew the session once, then retry.
      if (res.status === 401 && er.code === 'invalid_visitor_token' && !opt.noAuth && !opt.retried) {
        await renewSession();
        return api(method, path, body, Object.assign({}, opt, { retried: true }));
      }
      throw apiError(res.status, er.code || 'http_' + res.status, er.message || 'Request failed (' + res.status + ')');
    }
    return data || {};
  }

  // POST /sessions: reuse the stored token when possible, otherwise start a fresh visitor.
  async function startSession() {
    var stored = token;
    var data;
    try {
      data = await api('POST', '/widget/v1/sessions',
        stored ? { website_token: WEBSITE_TOKEN, token: stored } : { website_token: WEBSITE_TOKEN }, { noAuth: true });
    } catch (e) {
      if (!stored || e.status !== 401) throw e;
      store.del(KEY_TOKEN); token = null;
      data = await api('POST', '/widget/v1/sessions', { website_token: WEBSITE_TOKEN }, { noAuth: true });
    }
    setToken(data.token);
    visitorId = data.visitor_id;
    expiresAt = Date.parse(data.expires_at) || 0;
    settings = Object.assign(settings, data.settings || {});
    applySettings();
    return data;
  }
  var renewing = null;
  function renewSession() {
    if (!renewing) {
      var before = visitorId;
      renewing = startSession().then(function (d) {
        // A brand-new visitor cannot see the old thread: reset and reload.
        if (before && d.visitor_id !== before) {
          disconnect();
          loadConversation({ replace: true }).catch(showError).then(connect);
        }
        return d;
      }).finally(function () { renewing = null; });
    }
    return renewing;
  }
  function setToken(t) {
    var changed = token !== t;
    token = t;
    if (t) store.set(KEY_TOKEN, t);
    // Attachment links carry the token: refresh the ones already shown.
    if (changed) entries.forEach(function (e) { if ((e.data.attachments || []).length) render(e); });
  }

  // GET /conversation and merge (or replace, after identify / visitor change).
  async function loadConversation(opt) {
    opt = opt || {};
    var data = await api('GET', '/widget/v1/conversation');
    var list = data.messages || [];
    customer = data.customer || {};
    if (opt.replace) {
      var keep = new Set(list.map(function (m) { return m.id; }));
      entries.slice().forEach(function (e) { if (e.data.id && !keep.has(e.data.id)) removeEntry(e); });
    }
    if (opt.replace || opt.resync) lastSeq = data.last_seq || 0;
    else lastSeq = Math.max(lastSeq, data.last_seq || 0);
    list.forEach(function (m) { upsert(m); });
    updatePrechat();
  }

  // ---- UI --------------------------------------------------------------------------------------
  var CSS = [
    ':host{all:initial}',
    '*{box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}',
    '[hidden]{display:none!important}',
    '.launcher{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;cursor:pointer;background:#4f46e5;color:#fff;box-shadow:0 6px 20px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;z-index:2147483000}',
    '.launcher:hover{background:#4338ca}',
    '.badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#ef4444;color:#fff;font-size:12px;line-height:20px;text-align:center}',
    '.panel{position:fixed;right:20px;bottom:88px;width:360px;max-width:calc(100vw - 40px);height:540px;max-height:calc(100vh - 110px);background:#fff;color:#111827;border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden;z-index:2147483000;font-size:14px}',
    '.head{background:#4f46e5;color:#fff;padding:12px 14px;display:flex;align-items:flex-start;gap:8px}',
    '.head .t{flex:1;min-width:0}',
    '.head h2{margin:0;font-size:16px;font-weight:600}',
    '.head .sub{font-size:12px;opacity:.85;margin-top:2px}',
    '.head button{background:transparent;border:0;color:#fff;font-size:20px;cursor:pointer;line-height:1}',
    '.status{font-size:11px;padding:2px 6px;border-radius:8px;background:rgba(255,255,255,.2);white-space:nowrap}',
    '.msgs{flex:1;overflow-y:auto;padding:12px;background:#f9fafb;display:flex;flex-direction:column;gap:8px}',
    '.welcome{align-self:flex-start;background:#eef2ff;color:#3730a3;padding:8px 10px;border-radius:10px;max-width:85%;white-space:pre-wrap}',
    '.msg{display:flex;flex-direction:column;max-width:80%}',
    '.msg[data-direction=inbound]{align-self:flex-end;align-items:flex-end}',
    '.msg[data-direction=outbound]{align-self:flex-start;align-items:flex-start}',
    '.bubble{padding:8px 10px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word;overflow-wrap:anywhere}',
    '.msg[data-direction=inbound] .bubble{background:#4f46e5;color:#fff;border-bottom-right-radius:4px}',
    '.msg[data-direction=outbound] .bubble{background:#fff;border:1px solid #e5e7eb;border-bottom-left-radius:4px}',
    '.msg[data-status=sending] .bubble{opacity:.65}',
    '.card{display:grid;gap:6px}.card img{max-width:100%;border-radius:8px}',
    '.card-button{display:inline-block;justify-self:start;background:#4f46e5;color:#fff;text-decoration:none;padding:6px 12px;border-radius:8px;font-weight:600}',
    '.msg[data-status=failed] .bubble{background:#fee2e2;color:#991b1b}',
    '.chan{display:block;font-size:10px;text-transform:uppercase;letter-spacing:.04em;opacity:.75;margin-bottom:2px}',
    '.att{display:block;margin-top:4px;color:inherit}',
    '.att img{max-width:200px;max-height:160px;border-radius:8px;display:block}',
    '.meta{font-size:11px;color:#6b7280;margin-top:2px}',
    '.meta button{border:0;background:none;color:#4f46e5;cursor:pointer;font-size:11px;padding:0 0 0 6px}',
    '.typing{font-size:12px;color:#6b7280;padding:2px 14px;font-style:italic}',
    '.note{font-size:12px;padding:4px 14px;color:#b91c1c}',
    '.note.info{color:#374151}',
    'form{margin:0}',
    '.prechat{padding:14px;display:flex;flex-direction:column;gap:8px;border-top:1px solid #e5e7eb}',
    'input,textarea{font-size:14px;padding:8px 10px;border:1px solid #d1d5db;border-radius:8px;width:100%;color:#111827;background:#fff}',
    'input:focus,textarea:focus{outline:2px solid #a5b4fc;border-color:#6366f1}',
    '.btn{background:#4f46e5;color:#fff;border:0;border-radius:8px;padding:8px 12px;cursor:pointer;font-size:14px}',
    '.btn:disabled{opacity:.5;cursor:default}',
    '.link{background:none;border:0;color:#4f46e5;cursor:pointer;font-size:12px;padding:0}',
    '.handoff{padding:4px 14px;border-top:1px solid #f3f4f6}',
    '.handoff ul{list-style:none;margin:4px 0;padding:0;display:flex;flex-wrap:wrap;gap:6px}',
    '.handoff li button{border:1px solid #c7d2fe;background:#eef2ff;color:#3730a3;border-radius:12px;padding:3px 10px;cursor:pointer;font-size:12px}',
    '.handoff form{display:flex;gap:6px;margin:4px 0}',
    '.composer{display:flex;gap:6px;padding:10px;border-top:1px solid #e5e7eb;align-items:flex-end}',
    '.composer textarea{resize:none;height:40px;max-height:120px}',
    '.attach{background:#f3f4f6;color:#374151;border:0;border-radius:8px;width:40px;height:40px;cursor:pointer;font-size:18px;flex:none}',
  ].join('\n');
  var ICON_CHAT = '<svg width="26" height="26" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z"/></svg>';

  var host = el('div', { id: 'switchboard-widget' });
  var root = host.attachShadow({ mode: 'open' });
  var style = el('style', null, CSS);

  var launcher = el('button', { 'data-sb': 'launcher', class: 'launcher', type: 'button', 'aria-label': 'Open chat' });
  launcher.innerHTML = ICON_CHAT; // constant markup only
  var badge = el('span', { class: 'badge', 'data-sb': 'badge', hidden: '' });
  launcher.appendChild(badge);

  var panel = el('div', { 'data-sb': 'panel', class: 'panel', role: 'dialog', hidden: '' });
  var head = el('div', { class: 'head' });
  var headText = el('div', { class: 't' });
  var titleEl = el('h2', null, settings.title);
  var presenceEl = el('div', { class: 'sub', 'data-sb': 'presence' }, '');
  headText.append(titleEl, presenceEl);
  var statusEl = el('span', { class: 'status', 'data-sb': 'status' }, 'connecting');
  var closeBtn = el('button', { type: 'button', 'data-sb': 'close', 'aria-label': 'Close chat' }, '\u00d7');
  head.append(headText, statusEl, closeBtn);

  var list = el('div', { class: 'msgs', 'data-sb': 'messages', 'aria-live': 'polite' });
  var welcomeEl = el('div', { class: 'welcome', 'data-sb': 'welcome', hidden: '' });
  list.appendChild(welcomeEl);

  // Pre-chat form: name / email / phone.
  var prechat = el('form', { class: 'prechat', 'data-sb': 'prechat', hidden: '', novalidate: '' });
  var pcIntro = el('div', null, 'Please introduce yourself so we can get back to you.');
  var pcName = el('input', { name: 'name', type: 'text', placeholder: 'Your name', autocomplete: 'name' });
  var pcEmail = el('input', { name: 'email', type: 'email', placeholder: 'you@example.com', autocomplete: 'email' });
  var pcPhone = el('input', { name: 'phone', type: 'tel', placeholder: '+15551234567 (optional)', autocomplete: 'tel' });
  var pcError = el('div', { class: 'note', 'data-sb': 'prechat-error', hidden: '' });
  var pcSubmit = el('button', { type: 'submit', class: 'btn', 'data-sb': 'prechat-submit' }, 'Start chat');
  prechat.append(pcIntro, pcName, pcEmail, pcPhone, pcError, pcSubmit);

  var typingEl = el('div', { class: 'typing', 'data-sb': 'typing', hidden: '' }, 'Agent is typing\u2026');
  var noteEl = el('div', { class: 'note', 'data-sb': 'error', hidden: '' });

  // "Continue on another channel" menu.
  var handoffBox = el('div', { class: 'handoff', 'data-sb': 'handoff', hidden: '' });
  var handoffToggle = el('button', { type: 'button', class: 'link', 'data-sb': 'handoff-toggle' }, 'Continue on another channel');
  var handoffMenu = el('ul', { 'data-sb': 'handoff-menu', hidden: '' });
  var handoffForm = el('form', { 'data-sb': 'handoff-form', hidden: '', novalidate: '' });
  var handoffAddr = el('input', { name: 'address', type: 'text', 'data-sb': 'handoff-address' });
  var handoffSubmit = el('button', { type: 'submit', class: 'btn', 'data-sb': 'handoff-submit' }, 'Continue');
  var handoffError = el('div', { class: 'note', 'data-sb': 'handoff-error', hidden: '' });
  handoffForm.append(handoffAddr, handoffSubmit);
  handoffBox.append(handoffToggle, handoffMenu, handoffForm, handoffError);
  var handoffTarget = null;

  var composer = el('form', { class: 'composer', 'data-sb': 'composer' });
  var attachBtn = el('button', { type: 'button', class: 'attach', 'aria-label': 'Attach a file', title: 'Attach a file' }, '\u{1F4CE}');
  var fileInput = el('input', { type: 'file', 'data-sb': 'file', hidden: '' });
  var input = el('textarea', { 'data-sb': 'input', rows: '1', placeholder: 'Type a message\u2026', 'aria-label': 'Message' });
  var sendBtn = el('button', { type: 'submit', class: 'btn', 'data-sb': 'send' }, 'Send');
  composer.append(attachBtn, fileInput, input, sendBtn);

  panel.append(head, list, prechat, typingEl, noteEl, handoffBox, composer);
  root.append(style, panel, launcher);

  function mount() { if (!host.isConnected) document.body.appendChild(host); }
  if (document.body) mount(); else document.addEventListener('DOMContentLoaded', mount);

  function applySettings() {
    titleEl.textContent = settings.title || 'Chat with us';
    welcomeEl.textContent = settings.welcome || '';
    welcomeEl.hidden = !settings.welcome;
    if (settings.upload_types && settings.upload_types.length) fileInput.setAttribute('accept', settings.upload_types.join(','));
    // Handoff menu entries.
    handoffMenu.textContent = '';
    var hs = Array.isArray(settings.handoff) ? settings.handoff : [];
    hs.forEach(function (h) {
      var li = el('li');
      var b = el('button', { type: 'button', 'data-sb': 'handoff-option', 'data-channel-account-id': String(h.channel_account_id) }, h.name || h.channel);
      b.addEventListener('click', function () { pickHandoff(h); });
      li.appendChild(b);
      handoffMenu.appendChild(li);
    });
    handoffBox.hidden = hs.length === 0;
  }

  var noteTimer = null;
  function showError(e, info) {
    noteEl.textContent = typeof e === 'string' ? e : (e && e.message) || 'Something went wrong.';
    noteEl.className = info ? 'note info' : 'note';
    noteEl.hidden = false;
    clearTimeout(noteTimer);
    noteTimer = setTimeout(function () { noteEl.hidden = true; }, 8000);
  }
  function setStatus(s) { statusEl.textContent = s; }

  function setOpen(open) {
    isOpen = open;
    panel.hidden = !open;
    launcher.setAttribute('aria-label', open ? 'Close chat' : 'Open chat');
    if (open) {
      unread = 0; updateBadge();
      scrollBottom();
      if (prechat.hidden) input.focus(); else pcName.focus();
      maybeSeen();
    }
    emit(open ? 'open' : 'close');
  }
  function updateBadge() { badge.textContent = String(unread); badge.hidden = unread === 0; }
  function scrollBottom() { list.scrollTop = list.scrollHeight; }

  function updatePrechat() {
    var show = !!settings.prechat && !prechatDone && !customer.name && !customer.email && entries.length === 0;
    prechat.hidden = !show;
    composer.hidden = show;
  }

  // ---- Messages --------------------------------------------------------------------------------
  function attachmentUrl(a) {
    if (!a.url || a.url.charAt(0) !== '/' || a.url.charAt(1) === '/') return null;
    return ORIGIN + a.url + (a.url.indexOf('?') < 0 ? '?' : '&') + 'token=' + encodeURIComponent(token || '');
  }
  function render(entry) {
    var m = entry.data, n = entry.el;
    n.setAttribute('data-id', m.id || '');
    n.setAttribute('data-echo-id', m.echo_id || '');
    n.setAttribute('data-direction', m.direction || 'outbound');
    n.setAttribute('data-status', m.status || '');
    n.textContent = '';
    var bubble = el('div', { class: 'bubble' });
    if (m.channel && m.channel !== 'widget') bubble.appendChild(el('span', { class: 'chan', 'data-sb': 'channel' }, m.channel));
    if (m.card && m.card.title) {
      // An automated message as a card: image, title, text, button (links only to http(s)).
      var card = el('div', { class: 'card', 'data-sb': 'card' });
      if (m.card.image_url && /^https?:\/\//.test(m.card.image_url)) {
        var pic = el('img', { alt: '', loading: 'lazy' });
        pic.src = m.card.image_url;
        card.appendChild(pic);
      }
      card.appendChild(el('strong', { 'data-sb': 'card-title' }, m.card.title));
      if (m.card.text) card.appendChild(el('div', { class: 'body', 'data-sb': 'body' }, m.card.text));
      if (m.card.button_url && /^https?:\/\//.test(m.card.button_url)) {
        var go = el('a', { class: 'card-button', 'data-sb': 'card-button', target: '_blank', rel: 'noopener noreferrer' },
          m.card.button_label || 'Open');
        go.href = m.card.button_url;
        card.appendChild(go);
      }
      bubble.appendChild(card);
    } else if (m.body) bubble.appendChild(el('div', { class: 'body', 'data-sb': 'body' }, m.body));
    (m.attachments || []).forEach(function (a) {
      var url = attachmentUrl(a);
      var isImg = /^image\//.test(a.content_type || '');
      var link = el(url ? 'a' : 'span', { class: 'att', 'data-sb': 'attachment' });
      if (url) { link.href = url; link.target = '_blank'; link.rel = 'noopener noreferrer'; }
      if (isImg && url) {
        var img = el('img', { alt: a.filename || 'image', loading: 'lazy' });
        img.src = url;
        link.appendChild(img);
      } else {
        if (url) link.setAttribute('download', a.filename || '');
        link.textContent = '\u{1F4C4} ' + (a.filename || 'file') + ' (' + fmtSize(a.size) + ')';
      }
      bubble.appendChild(link);
    });
    var meta = el('div', { class: 'meta' }, fmtTime(m.sent_at));
    if (m.status === 'sending') meta.textContent += ' \u00b7 sending\u2026';
    if (m.status === 'failed') {
      meta.textContent += ' \u00b7 not sent';
      var retry = el('button', { type: 'button', 'data-sb': 'retry' }, 'Retry');
      retry.addEventListener('click', function () { requeue(entry); });
      meta.appendChild(retry);
    }
    n.append(bubble, meta);
  }
  function cmp(a, b) {
    var ta = Date.parse(a.data.sent_at) || 0, tb = Date.parse(b.data.sent_at) || 0;
    if (ta !== tb) return ta - tb;
    var ia = a.data.id || '\uffff', ib = b.data.id || '\uffff'; // pending last among equals
    return String(ia).localeCompare(String(ib), undefined, { numeric: true });
  }
  function placeAll() {
    entries.sort(cmp);
    var prev = welcomeEl;
    entries.forEach(function (e) {
      if (prev.nextSibling !== e.el) list.insertBefore(e.el, prev.nextSibling);
      prev = e.el;
    });
  }
  function removeEntry(e) {
    entries = entries.filter(function (x) { return x !== e; });
    if (e.data.id) byId.delete(e.data.id);
    if (e.data.echo_id) byEcho.delete(e.data.echo_id);
    e.el.remove();
  }
  function snapshot(m) { return JSON.parse(JSON.stringify(m)); }

  // Insert or update one message; de-duplicates by id and by echo_id.
  // opt.weak: a possibly stale copy (a POST answer) — don't overwrite a confirmed message.
  function upsert(m, opt) {
    if (!m) return null;
    opt = opt || {};
    var entry = (m.id && byId.get(m.id)) || (m.echo_id && byEcho.get(m.echo_id)) || null;
    var nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
    if (entry) {
      if (!(opt.weak && entry.data.id)) Object.assign(entry.data, m);
    } else {
      entry = { data: Object.assign({ attachments: [] }, m), el: el('div', { class: 'msg', 'data-sb': 'message' }) };
      entries.push(entry);
    }
    var isNew = !entry.shown;
    entry.shown = true;
    if (entry.data.id) byId.set(entry.data.id, entry);
    if (entry.data.echo_id) byEcho.set(entry.data.echo_id, entry);
    if (m.id && m.echo_id) dequeue(m.echo_id); // the server has it
    render(entry);
    placeAll();
    if (isNew) {
      if (entry.data.direction === 'outbound') {
        needSeen = true;
        hideTyping();
        if (opt.live && (!isOpen || document.hidden)) { unread++; updateBadge(); }
      }
      if (nearBottom || entry.data.direction === 'inbound') scrollBottom();
      updatePrechat();
      emit('message', snapshot(entry.data));
    }
    maybeSeen();
    return entry;
  }

  // ---- Sending ---------------------------------------------------------------------------------
  function enqueue(text, attachmentIds, attachments) {
    var item = { echo_id: uuid(), text: text, attachment_ids: attachmentIds || [],
      attachments: attachments || [], sent_at: new Date().toISOString() };
    queue.push(item); saveQueue();
    showPending(item);
    flush();
  }
  function showPending(item) {
    upsert({ id: '', echo_id: item.echo_id, direction: 'inbound', author: 'customer', channel: 'widget',
      body: item.text, attachments: item.attachments || [], status: 'sending', sent_at: item.sent_at });
  }
  function requeue(entry) {
    var m = entry.data;
    if (!queue.some(function (q) { return q.echo_id === m.echo_id; })) {
      queue.push({ echo_id: m.echo_id, text: m.body || '', attachment_ids: (m.attachments || []).map(function (a) { return a.id; }),
        attachments: m.attachments || [], sent_at: m.sent_at });
      saveQueue();
    }
    m.status = 'sending'; render(entry);
    flushDelay = 1000; flush();
  }

  var flushing = false, flushTimer = null, flushDelay = 1000;
  // Send queued messages in order, retrying with the same echo_id until a 2xx.
  async function flush() {
    if (flushing || !token) return;
    flushing = true;
    clearTimeout(flushTimer);
    try {
      while (queue.length) {
        var item = queue[0];
        try {
          var res = await api('POST', '/widget/v1/messages',
            { echo_id: item.echo_id, text: item.text || '', attachment_ids: item.attachment_ids || [] });
          dequeue(item.echo_id);
          upsert(res.message, { weak: true });
          flushDelay = 1000;
        } catch (e) {
          if (e.status && e.status >= 400 && e.status < 500 && [401, 408, 425, 429].indexOf(e.status) < 0) {
            // Permanent rejection (validation, too large...): stop retrying, let the visitor retry.
            dequeue(item.echo_id);
            var ent = byEcho.get(item.echo_id);
            if (ent) { ent.data.status = 'failed'; render(ent); }
            showError(e);
            continue;
          }
          flushTimer = setTimeout(flush, jitter(flushDelay));
          flushDelay = Math.min(flushDelay * 2, 30000);
          return;
        }
      }
    } finally {
      flushing = false;
    }
  }

  function send() {
    var text = input.value.trim();
    if (!text) return;
    input.value = '';
    typingStop();
    enqueue(text, [], []);
  }

  function typeAllowed(type) {
    var types = settings.upload_types || [];
    if (!types.length) return true;
    return types.some(function (t) {
      return t === type || (t.slice(-2) === '/*' && type.indexOf(t.slice(0, -1)) === 0);
    });
  }
  async function uploadFile(file) {
    if (!file) return;
    if (settings.max_upload_bytes && file.size > settings.max_upload_bytes) {
      showError('This file is too large (max ' + fmtSize(settings.max_upload_bytes) + ').'); return;
    }
    if (!typeAllowed(file.type)) { showError('This file type is not supported.'); return; }
    showError('Uploading ' + file.name + '\u2026', true);
    try {
      var a = await api('POST', '/widget/v1/attachments?filename=' + encodeURIComponent(file.name), undefined,
        { raw: file, contentType: file.type || 'application/octet-stream' });
      noteEl.hidden = true;
      enqueue('', [a.id], [{ id: a.id, filename: a.filename, content_type: a.content_type, size: a.size }]);
    } catch (e) {
      showError(e);
    }
  }

  // ---- Typing & seen ---------------------------------------------------------------------------
  var typingOn = false, typingSentAt = 0, typingTimer = null;
  function sendTyping(on) {
    if (transport && transport.kind === 'ws' && connected) {
      try { transport.ws.send(JSON.stringify({ type: 'typing', on: on })); return; } catch (e) { /* fall back */ }
    }
    if (token) api('POST', '/widget/v1/typing', { on: on }).catch(function () {});
  }
  function typingKeystroke() {
    var now = Date.now();
    if (!typingOn || now - typingSentAt >= 2000) { typingOn = true; typingSentAt = now; sendTyping(true); }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(typingStop, 3000);
  }
  function typingStop() {
    clearTimeout(typingTimer);
    if (typingOn) { typingOn = false; sendTyping(false); }
  }
  var agentTypingTimer = null;
  function showTyping(on) {
    clearTimeout(agentTypingTimer);
    typingEl.hidden = !on;
    if (on) agentTypingTimer = setTimeout(hideTyping, 6000);
  }
  function hideTyping() { clearTimeout(agentTypingTimer); typingEl.hidden = true; }

  var seenTimer = null;
  function maybeSeen() {
    if (!needSeen || !isOpen || document.hidden || !token) return;
    clearTimeout(seenTimer);
    seenTimer = setTimeout(function () {
      if (!needSeen || !isOpen || document.hidden) return;
      needSeen = false;
      api('POST', '/widget/v1/seen').catch(function () { needSeen = true; });
    }, 300);
  }

  // ---- Live updates: WebSocket with SSE fallback -----------------------------------------------
  var transport = null;            // {kind:'ws', ws} | {kind:'sse', es}
  var useSse = typeof WebSocket !== 'function';
  var everOpened = false, failStreak = 0, reconnectDelay = 500, reconnectTimer = null, connGen = 0;
  var started = false;

  function onConnected() {
    connected = true; failStreak = 0; reconnectDelay = 500;
    setStatus('online');
    flush();
  }
  function onDisconnected(openedThisTime) {
    transport = null; connected = false;
    setStatus('offline');
    if (!openedThisTime) {
      failStreak++;
      if (!useSse && !everOpened && failStreak >= 3 && typeof EventSource === 'function') useSse = true;
    }
    scheduleReconnect();
  }
  function scheduleReconnect() {
    clearTimeout(reconnectTimer);
    var delay = jitter(Math.min(reconnectDelay, 15000));
    reconnectDelay = Math.min(reconnectDelay * 2, 15000);
    reconnectTimer = setTimeout(async function () {
      // Refresh the token first if it is about to expire, or if connecting keeps failing.
      if ((expiresAt && expiresAt - Date.now() < 60000) || (failStreak > 0 && failStreak % 3 === 0)) {
        try { await renewSession(); } catch (e) { /* retried on the next attempt */ }
      }
      connect();
    }, delay);
  }
  function connect() {
    clearTimeout(reconnectTimer);
    if (!token || transport) return;
    var gen = ++connGen;
    var opened = false;
    var q = 'token=' + encodeURIComponent(token) + '&after=' + lastSeq;
    setStatus('connecting');
    if (!useSse) {
      var ws;
      try { ws = new WebSocket(WS_ORIGIN + '/widget/v1/socket?' + q); }
      catch (e) { useSse = typeof EventSource === 'function'; onDisconnected(false); return; }
      transport = { kind: 'ws', ws: ws };
      ws.onopen = function () { if (gen !== connGen) return; opened = everOpened = true; onConnected(); };
      ws.onmessage = function (ev) { if (gen === connGen) handleRaw(ev.data); };
      ws.onclose = function () { if (gen === connGen) onDisconnected(opened); };
      ws.onerror = function () { /* a close event follows */ };
    } else if (typeof EventSource === 'function') {
      var es = new EventSource(ORIGIN + '/widget/v1/events?' + q);
      transport = { kind: 'sse', es: es };
      es.onopen = function () { if (gen !== connGen) return; opened = everOpened = true; onConnected(); };
      es.onmessage = function (ev) { if (gen === connGen) handleRaw(ev.data); };
      // Reconnect ourselves (not EventSource's auto-retry) so `after` is current.
      es.onerror = function () { if (gen !== connGen) return; es.close(); onDisconnected(opened); };
    } else {
      setStatus('offline'); // no live transport at all; sending still works over POST
    }
  }
  function disconnect() {
    connGen++;
    clearTimeout(reconnectTimer);
    if (transport) {
      try { if (transport.kind === 'ws') transport.ws.close(); else transport.es.close(); } catch (e) { /* ignore */ }
    }
    transport = null; connected = false;
    setStatus('connecting');
  }
  function handleRaw(raw) {
    var f;
    try { f = JSON.parse(raw); } catch (e) { return; }
    if (f && typeof f === 'object') handleFrame(f);
  }
  function handleFrame(f) {
    if (typeof f.seq === 'number' && f.seq > lastSeq) lastSeq = f.seq;
    switch (f.type) {
      case 'message.created':
      case 'message.updated':
        upsert(f.message, { live: true });
        break;
      case 'conversation.updated':
        emit('conversation', { status: f.status });
        break;
      case 'typing':
        showTyping(!!f.on);
        break;
      case 'presence':
        presenceEl.textContent = f.agents_online ? "We're online" : "We'll reply by e-mail";
        emit('presence', { agents_online: !!f.agents_online });
        break;
      case 'resync':
        loadConversation({ resync: true }).catch(showError);
        break;
      case 'ack':
        if (f.echo_id) dequeue(f.echo_id);
        upsert(f.message, { weak: true });
        break;
      case 'error':
        if (f.echo_id) {
          var ent = byEcho.get(f.echo_id);
          if (ent && !ent.data.id) { dequeue(f.echo_id); ent.data.status = 'failed'; render(ent); }
        }
        showError(f.message || f.code);
        break;
      default: break; // unknown frame types are ignored
    }
  }

  // ---- Handoff ---------------------------------------------------------------------------------
  function pickHandoff(h) {
    handoffTarget = h;
    handoffMenu.hidden = true;
    handoffError.hidden = true;
    handoffAddr.value = '';
    handoffAddr.placeholder = h.address_kind === 'phone' ? '+15551234567'
      : h.address_kind === 'email' ? 'you@example.com' : 'your id on ' + (h.name || h.channel);
    handoffAddr.type = h.address_kind === 'email' ? 'email' : h.address_kind === 'phone' ? 'tel' : 'text';
    handoffForm.hidden = false;
    handoffAddr.focus();
  }
  handoffToggle.addEventListener('click', function () {
    var show = handoffMenu.hidden && handoffForm.hidden;
    handoffMenu.hidden = !show;
    handoffForm.hidden = true;
    handoffError.hidden = true;
  });
  handoffForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var address = handoffAddr.value.trim();
    if (!handoffTarget || !address) return;
    handoffSubmit.disabled = true;
    try {
      var res = await api('POST', '/widget/v1/handoff', { channel_account_id: handoffTarget.channel_account_id, address: address });
      upsert(res.message, { weak: true });
      handoffForm.hidden = true;
      showError('We will continue on ' + (handoffTarget.name || handoffTarget.channel) + '.', true);
    } catch (e) {
      handoffError.textContent = e.message;
      handoffError.hidden = false;
    } finally {
      handoffSubmit.disabled = false;
    }
  });

  // ---- Event wiring ----------------------------------------------------------------------------
  launcher.addEventListener('click', function () { setOpen(!isOpen); });
  closeBtn.addEventListener('click', function () { setOpen(false); });
  composer.addEventListener('submit', function (ev) { ev.preventDefault(); send(); });
  input.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send(); }
  });
  input.addEventListener('input', function () { if (input.value) typingKeystroke(); else typingStop(); });
  attachBtn.addEventListener('click', function () { fileInput.click(); });
  fileInput.addEventListener('change', function () {
    var f = fileInput.files && fileInput.files[0];
    fileInput.value = '';
    uploadFile(f);
  });
  prechat.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var body = {};
    [['name', pcName], ['email', pcEmail], ['phone', pcPhone]].forEach(function (p) {
      var v = p[1].value.trim(); if (v) body[p[0]] = v;
    });
    pcSubmit.disabled = true; pcError.hidden = true;
    try {
      await ready;
      var res = await api('POST', '/widget/v1/contact', body);
      customer = res.customer || body;
      prechatDone = true;
      updatePrechat();
      input.focus();
    } catch (e) {
      pcError.textContent = e.message;
      pcError.hidden = false;
    } finally {
      pcSubmit.disabled = false;
    }
  });
  document.addEventListener('visibilitychange', maybeSeen);
  window.addEventListener('online', function () {
    if (!started) return;
    if (!transport) { reconnectDelay = 500; connect(); }
    flushDelay = 1000; flush();
  });

  // ---- Start-up --------------------------------------------------------------------------------
  var readyResolve, readyReject;
  var ready = new Promise(function (res, rej) { readyResolve = res; readyReject = rej; });
  ready.catch(function () {}); // avoid unhandled-rejection noise; callers still see it

  queue.forEach(showPending); // unsent messages from a previous page view
  async function init(attempt) {
    setStatus('connecting');
    try {
      await startSession();
    } catch (e) {
      if (e.status >= 400 && e.status < 500) { // bad website token etc.: give up quietly
        console.warn('[switchboard] widget disabled:', e.message);
        setStatus('offline');
        readyReject(e);
        return;
      }
      setStatus('offline');
      setTimeout(function () { init(attempt + 1); }, jitter(Math.min(500 * Math.pow(2, attempt), 15000)));
      return;
    }
    started = true;
    readyResolve();
    try { await loadConversation(); } catch (e) { showError(e); }
    updatePrechat();
    connect();
    flush();
  }
  init(0);

  // ---- Public API ------------------------------------------------------------------------------
  window.Switchboard = {
    __sb: true,
    identify: function (opts) {
      opts = opts || {};
      return ready.then(async function () {
        var body = {};
        ['identifier', 'identifier_hash', 'name', 'email', 'phone'].forEach(function (k) {
          if (opts[k] != null && opts[k] !== '') body[k] = String(opts[k]);
        });
        var res = await api('POST', '/widget/v1/identify', body);
        if (res.token) setToken(res.token);
        // The token may now belong to an existing customer: reload their thread, then reconnect.
        disconnect();
        try { await loadConversation({ replace: true }); } finally { connect(); flush(); }
        return { verified: !!res.verified };
      });
    },
    open: function () { setOpen(true); },
    close: function () { setOpen(false); },
    on: function (event, fn) {
      (listeners[event] = listeners[event] || []).push(fn);
      return function off() { listeners[event] = (listeners[event] || []).filter(function (x) { return x !== fn; }); };
    },
    state: function () {
      return { visitor_id: visitorId, connected: connected,
        messages: entries.map(function (e) { return snapshot(e.data); }) };
    },
  };
})();
