// Hypha LAN page: progressive enhancement only. The page works without it.
// - theme toggle (remembers the choice; default follows the system)
// - live updates of the #live region over server-sent events (/events)
// - streaming chat box
(function () {
  'use strict';
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem('hypha-theme'); } catch (e) {}
  if (saved === 'dark' || saved === 'light') root.setAttribute('data-theme', saved);

  function isDark() {
    var t = root.getAttribute('data-theme');
    if (t) return t === 'dark';
    return window.matchMedia && matchMedia('(prefers-color-scheme: dark)').matches;
  }

  function theme() {
    var b = document.getElementById('theme-toggle');
    if (!b) return;
    b.hidden = false;
    var sync = function () {
      var d = isDark();
      b.setAttribute('aria-pressed', d ? 'true' : 'false');
      b.title = d ? 'Switch to light mode' : 'Switch to dark mode';
    };
    sync();
    b.addEventListener('click', function () {
      var t = isDark() ? 'light' : 'dark';
      root.setAttribute('data-theme', t);
      try { localStorage.setItem('hypha-theme', t); } catch (e) {}
      sync();
    });
  }

  function live() {
    var view = document.body.getAttribute('data-view');
    var el = document.getElementById('live');
    var st = document.getElementById('live-status');
    if (!window.EventSource || !el || !st || view === 'steward') return;
    var q = document.body.getAttribute('data-live-query') || '';
    var es = new EventSource('/events?view=' + encodeURIComponent(view) + q);
    es.addEventListener('open', function () {
      st.textContent = 'Live';
      st.classList.add('is-live');
    });
    es.addEventListener('update', function (ev) {
      var d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      var a = document.activeElement;
      if (a && el.contains(a) && /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(a.tagName)) return;
      el.innerHTML = d.html;
      el.setAttribute('data-updated', d.at);
      st.textContent = 'Live · updated ' + d.at;
      st.classList.add('is-live');
    });
    es.addEventListener('error', function () {
      st.textContent = 'Reconnecting…';
      st.classList.remove('is-live');
    });
  }

  function chat() {
    var f = document.getElementById('chat-form');
    var log = document.getElementById('chat-log');
    var meta = document.querySelector('meta[name="xsrf-token"]');
    if (!f || !log || !meta || !window.fetch || !window.TextDecoder || !window.ReadableStream) return;
    var history = [];
    function add(cls, who, text) {
      var p = document.createElement('p');
      p.className = 'msg ' + cls;
      var s = document.createElement('span');
      s.className = 'who';
      s.textContent = who;
      var t = document.createElement('span');
      t.className = 'text';
      t.textContent = text;
      p.appendChild(s);
      p.appendChild(t);
      log.appendChild(p);
      return t;
    }
    f.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var msg = f.elements.message.value.trim();
      if (!msg) return;
      var model = f.elements.model.value;
      history.push({ role: 'user', content: msg });
      add('user', 'You', msg);
      f.elements.message.value = '';
      var out = add('assistant', model || 'model', '');
      var btn = f.querySelector('button');
      btn.disabled = true;
      var text = '';
      fetch('/inference/chat', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'Accept': 'text/event-stream', 'X-XSRF-Token': meta.content },
        body: JSON.stringify({ model: model, messages: history })
      }).then(function (r) {
        if (!r.ok) return r.json().then(function (j) { throw new Error(j.error || r.statusText); });
        var rd = r.body.getReader(), dec = new TextDecoder(), buf = '';
        function handle(evt) {
          var name = 'message', data = '';
          evt.split('\n').forEach(function (l) {
            if (l.indexOf('event:') === 0) name = l.slice(6).trim();
            else if (l.indexOf('data:') === 0) data += l.slice(5).trim();
          });
          if (!data) return;
          var j = JSON.parse(data);
          if (name === 'error') throw new Error(j.error);
          if (j.delta) { text += j.delta; out.textContent = text; }
        }
        function pump() {
          return rd.read().then(function (x) {
            if (x.done) return;
            buf += dec.decode(x.value, { stream: true });
            var i;
            while ((i = buf.indexOf('\n\n')) >= 0) { handle(buf.slice(0, i)); buf = buf.slice(i + 2); }
            return pump();
          });
        }
        return pump();
      }).then(function () {
        history.push({ role: 'assistant', content: text });
        out.parentNode.classList.add('done');
      }).catch(function (e) {
        var p = document.createElement('p');
        p.className = 'err';
        p.setAttribute('role', 'alert');
        p.textContent = e.message;
        log.appendChild(p);
        history.pop();
      }).then(function () { btn.disabled = false; });
    });
  }

  function start() { theme(); live(); chat(); }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
