// Switchboard web app: the few behaviours htmx attributes cannot express. No build step.
(function () {
  "use strict";

  function showRule() {
    var picker = document.getElementById("channel-picker");
    var rule = document.getElementById("reply-rule");
    var note = document.getElementById("note-toggle");
    if (!rule) return;
    if (note && note.checked) {
      rule.textContent = "A private note: only agents see it; nothing is sent.";
      rule.dataset.allowed = "true";
      return;
    }
    var option = picker && picker.selectedOptions[0];
    if (option) {
      rule.textContent = option.dataset.rule;
      rule.dataset.allowed = option.dataset.allowed;
    }
  }

  function stickThreadToBottom(thread, wasNearBottom, previousTop) {
    if (!thread) return;
    thread.scrollTop = wasNearBottom ? thread.scrollHeight : previousTop;
  }

  var threadState = null;
  var opened = false;

  // A notice from the last action goes away when the next one starts.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var notice = document.getElementById("notice");
    if (notice && e.detail.requestConfig && e.detail.requestConfig.verb !== "get") notice.textContent = "";
  });

  // Never pull the conversation header or the customer panel out from under someone using
  // their forms (a half-typed label, a chosen assignee, a merge search): a live refresh waits
  // until the focus leaves that region.
  var guarded = ["conversation-header", "customer-panel"];
  var stale = {};
  document.addEventListener("htmx:beforeRequest", function (e) {
    guarded.forEach(function (id) {
      var region = document.getElementById(id);
      if (region && e.detail.elt === region && region.contains(document.activeElement)) {
        e.preventDefault();
        stale[id] = true;
      }
    });
  });
  document.addEventListener("focusout", function (e) {
    guarded.forEach(function (id) {
      var region = document.getElementById(id);
      if (stale[id] && region && !region.contains(e.relatedTarget)) {
        stale[id] = false;
        htmx.trigger(region, "sse-reconnected");
      }
    });
  });

  document.addEventListener("change", function (e) {
    if (e.target.id === "channel-picker" || e.target.id === "note-toggle") {
      showRule();
      var text = document.getElementById("composer-text");
      if (text && window.htmx) htmx.trigger(text, "remeasure");
      var templates = document.getElementById("template-area");
      if (e.target.id === "channel-picker" && templates && window.htmx) htmx.trigger(templates, "load-templates");
    }
  });

  // Ctrl/Cmd+Enter sends from the composer.
  document.addEventListener("keydown", function (e) {
    if (e.target.id === "composer-text" && e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      e.target.form.requestSubmit();
    }
  });

  // Canned responses: "/code" before the caret (at the start or after a space) and then Tab or
  // Enter, or the picker's Insert button, put the response's text at the caret. The texts
  // come from the picker's options; what was typed around the caret stays.
  function cannedOptions() {
    var picker = document.getElementById("canned-picker");
    if (!picker) return [];
    return Array.prototype.filter.call(picker.options, function (o) { return o.value; });
  }
  function insertAtCaret(text, content, from, to) {
    var before = text.value.slice(0, from);
    text.setRangeText(before && !/\s$/.test(before) ? " " + content : content, from, to, "end");
    text.focus();
    // Measures the new text and tells the customer we are typing, as typing would.
    text.dispatchEvent(new Event("input", { bubbles: true }));
  }
  function slashCommand(text) {
    if (text.selectionStart !== text.selectionEnd) return null;
    var typed = /(^|\s)\/([a-z0-9_-]*)$/.exec(text.value.slice(0, text.selectionStart));
    if (!typed) return null;
    var code = typed[2];
    var matches = cannedOptions().filter(function (o) { return o.value.indexOf(code) === 0; });
    if (!matches.length) return null;
    var exact = matches.filter(function (o) { return o.value === code; })[0];
    return { option: exact || matches[0], count: matches.length, from: text.selectionStart - code.length - 1 };
  }
  function showCannedHint(text) {
    var hint = document.getElementById("canned-hint");
    if (!hint) return;
    var found = slashCommand(text);
    hint.textContent = !found ? "" : "Tab inserts /" + found.option.value +
      (found.count > 1 ? " (" + found.count + " codes match, type more to choose)" : "");
  }
  document.addEventListener("input", function (e) {
    if (e.target.id === "composer-text") showCannedHint(e.target);
  });
  document.addEventListener("keydown", function (e) {
    if (e.target.id !== "composer-text" || (e.key !== "Tab" && e.key !== "Enter")) return;
    if (e.ctrlKey || e.metaKey || e.altKey || e.shiftKey) return;
    var found = slashCommand(e.target);
    // Without a matching code, Tab moves on and Enter starts a new line as usual.
    if (!found) return;
    e.preventDefault();
    insertAtCaret(e.target, found.option.dataset.content, found.from, e.target.selectionStart);
  });
  document.addEventListener("click", function (e) {
    if (!e.target.closest || !e.target.closest("#canned-insert")) return;
    var picker = document.getElementById("canned-picker");
    var text = document.getElementById("composer-text");
    var option = picker && picker.selectedOptions[0];
    if (!text || !option || !option.value) {
      if (picker) picker.focus();
      return;
    }
    insertAtCaret(text, option.dataset.content, text.selectionStart, text.selectionEnd);
    picker.value = "";
  });
  document.addEventListener("composer-sent", function () {
    var hint = document.getElementById("canned-hint");
    if (hint) hint.textContent = "";
  });
  // The add form clears only after the response was added (an error is retargeted above it).
  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (!form || form.id !== "canned-form" || !e.detail.successful) return;
    if (e.detail.xhr && e.detail.xhr.getResponseHeader("HX-Retarget")) return;
    form.reset();
    var error = document.getElementById("canned-error");
    if (error) error.textContent = "";
    document.getElementById("canned-code").focus();
  });

  // After a successful send (the server triggers this), clear the text but keep the focus.
  // The next message gets a key of its own (the page's key and a counter), so that only a
  // send repeated after a lost answer repeats a key.
  var sends = 0;
  document.addEventListener("composer-sent", function () {
    var key = document.getElementById("composer-key");
    if (key) key.value = key.value.split(".")[0] + "." + (++sends);
  });
  document.addEventListener("composer-sent", function () {
    var text = document.getElementById("composer-text");
    var error = document.getElementById("composer-error");
    if (error) error.textContent = "";
    var measure = document.getElementById("measure");
    if (measure) measure.textContent = "";
    var templates = document.getElementById("template-area");
    if (templates && window.htmx) htmx.trigger(templates, "load-templates");
    if (text) {
      text.value = "";
      text.focus();
    }
  });

  // A live refresh must not steal keyboard focus: remember where it was inside the swapped part
  // (the nearest element with an id) and put it back on the same element in the new content.
  var focusBefore = null;
  document.addEventListener("htmx:beforeSwap", function (e) {
    var active = document.activeElement;
    var target = e.detail.target;
    // Only the swap that holds the focus records it (another region's swap may come in between).
    if (active && active !== document.body && target && target.contains(active)) {
      var anchor = active.id ? active : active.closest("[id]");
      if (anchor) focusBefore = { id: anchor.id, tag: active.tagName, self: anchor === active };
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!focusBefore) return;
    var anchor = document.getElementById(focusBefore.id);
    var again = anchor && (focusBefore.self ? anchor : anchor.querySelector(focusBefore.tag));
    if (again && document.activeElement !== again) again.focus({ preventScroll: true });
    focusBefore = null;
  });

  // A live refresh replaces the thread: keep the reader where they were (or at the newest message).
  document.addEventListener("htmx:beforeSwap", function (e) {
    var thread = document.getElementById("thread");
    if (thread && e.detail.target === thread) {
      threadState = {
        near: thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80,
        top: thread.scrollTop,
      };
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (threadState) {
      stickThreadToBottom(document.getElementById("thread"), threadState.near, threadState.top);
      threadState = null;
    }
  });

  // The stream reconnects without Last-Event-ID: refresh every live region once, so nothing
  // missed while disconnected stays missing.
  document.addEventListener("htmx:sseOpen", function () {
    // Reading the open conversation is marked once the stream is open, so the list hears of it.
    document.querySelectorAll("[data-mark-read]").forEach(function (el) {
      htmx.trigger(el, "mark-read");
    });
    if (opened) {
      document.querySelectorAll('[hx-trigger*="sse-reconnected"]').forEach(function (el) {
        htmx.trigger(el, "sse-reconnected");
      });
    }
    opened = true;
  });

  // Typing, both ways. Theirs: the stream's `typing` events (never stored) for this conversation
  // fill a line of fixed height, so nothing moves. Ours: the API's typing call, at most every
  // 3 s while typing, and "stopped" after 4 s of quiet or a send.
  var typingClear = null;
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var line = document.getElementById("typing");
    if (!line || e.target !== line) return;
    e.preventDefault(); // the event is JSON, not HTML: write the line here
    var event;
    try { event = JSON.parse(e.detail.data); } catch (_) { return; }
    var data = event.data || {};
    if (event.conversation_id !== line.dataset.conversation || data.user_id === line.dataset.me) return;
    var who = data.author === "customer" ? line.dataset.customer : "Another agent";
    clearTimeout(typingClear);
    line.textContent = data.on ? who + " is typing…" : "";
    if (data.on) typingClear = setTimeout(function () { line.textContent = ""; }, 8000);
  });

  var lastTypingSent = 0;
  var typingStop = null;
  function sendTyping(on) {
    var line = document.getElementById("typing");
    if (!line) return;
    fetch("/api/v1/conversations/" + line.dataset.conversation + "/typing", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ on: on }),
      credentials: "same-origin",
    }).catch(function () {});
  }
  document.addEventListener("input", function (e) {
    if (e.target.id !== "composer-text") return;
    var now = Date.now();
    if (now - lastTypingSent > 3000) {
      lastTypingSent = now;
      sendTyping(true);
    }
    clearTimeout(typingStop);
    typingStop = setTimeout(function () { lastTypingSent = 0; sendTyping(false); }, 4000);
  });
  document.addEventListener("composer-sent", function () {
    if (lastTypingSent) {
      clearTimeout(typingStop);
      lastTypingSent = 0;
      sendTyping(false);
    }
  });

  // Presence: a heartbeat while the app is open (round-robin assignment goes to online agents);
  // the chosen status is remembered in this browser.
  function heartbeat() {
    var picker = document.getElementById("presence");
    if (!picker) return;
    fetch("/api/v1/presence", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ status: picker.value }),
      credentials: "same-origin",
    }).catch(function () {});
  }
  document.addEventListener("change", function (e) {
    if (e.target.id !== "presence") return;
    try { localStorage.setItem("sb-presence", e.target.value); } catch (_) {}
    heartbeat();
  });

  // Attachments: the file goes to the API's upload first; the reply carries its id.
  document.addEventListener("change", function (e) {
    if (e.target.id !== "attach" || !e.target.files.length) return;
    var file = e.target.files[0];
    var list = document.getElementById("attachments");
    var error = document.getElementById("composer-error");
    fetch("/api/v1/attachments?filename=" + encodeURIComponent(file.name), {
      method: "POST",
      headers: { "content-type": file.type || "application/octet-stream" },
      body: file,
      credentials: "same-origin",
    })
      .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
      .then(function (r) {
        if (!r.ok) {
          if (error) error.textContent = (r.body.error && r.body.error.message) || "upload failed";
          return;
        }
        var item = document.createElement("li");
        item.dataset.name = r.body.filename;
        var hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = "attachment_id";
        hidden.value = r.body.id;
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link";
        remove.textContent = "×";
        remove.setAttribute("aria-label", "Remove " + r.body.filename);
        remove.addEventListener("click", function () { item.remove(); });
        item.append("📎 " + r.body.filename + " ", hidden, remove);
        list.appendChild(item);
      })
      .catch(function () { if (error) error.textContent = "upload failed"; })
      .finally(function () { e.target.value = ""; });
  });
  document.addEventListener("composer-sent", function () {
    var list = document.getElementById("attachments");
    if (list) list.textContent = "";
  });

  // Times arrive in UTC with their instant in `datetime`; show them in the viewer's zone, in
  // the same shape (HH:MM today, YYYY-MM-DD HH:MM otherwise), so nothing moves.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function localDay(d) { return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()); }
  function localizeTimes(root) {
    var today = localDay(new Date());
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      var hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
      t.textContent = localDay(d) === today ? hm : localDay(d) + " " + hm;
      t.title = d.toString();
    });
  }
  document.addEventListener("htmx:load", function (e) { localizeTimes(e.detail.elt); });

  document.addEventListener("DOMContentLoaded", function () {
    localizeTimes(document);
    var picker = document.getElementById("presence");
    if (picker) {
      try { picker.value = localStorage.getItem("sb-presence") || "online"; } catch (_) {}
      heartbeat();
      setInterval(heartbeat, 30000);
    }
    showRule();
    stickThreadToBottom(document.getElementById("thread"), true, 0);
  });
})();
