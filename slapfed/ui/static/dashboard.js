// slapfed dashboard: follow the server's event stream and replace each changed section
// in place; buttons post to /action with the run's token. No library, no build step.
"use strict";
(function () {
  const token = document.querySelector('meta[name="slapfed-token"]').content;
  const flash = document.getElementById("flash");
  let updates = 0;

  function say(text, bad) {
    flash.textContent = text;
    flash.className = bad ? "flash bad" : "flash";
    flash.hidden = false;
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { flash.hidden = true; }, 6000);
  }

  function replace(name, html) {
    const box = document.querySelector('[data-section="' + name + '"]');
    if (!box) return;
    // keep what the reader opened or scrolled
    const open = new Set(Array.from(box.querySelectorAll("details[open]"),
                                    (d) => d.dataset.key));
    const wrap = box.querySelector(".svg-wrap");
    const scroll = wrap ? [wrap.scrollLeft, wrap.scrollTop] : null;
    box.innerHTML = html;
    box.querySelectorAll("details[data-key]").forEach((d) => {
      if (open.has(d.dataset.key)) d.open = true;
    });
    const again = box.querySelector(".svg-wrap");
    if (again && scroll) { again.scrollLeft = scroll[0]; again.scrollTop = scroll[1]; }
  }

  function connect() {
    const events = new EventSource("/events?token=" + encodeURIComponent(token));
    events.addEventListener("sections", (e) => {
      const sections = JSON.parse(e.data);
      for (const name of Object.keys(sections)) replace(name, sections[name]);
      updates += 1;
      document.body.dataset.updates = String(updates);
      document.body.dataset.stream = "open";
    });
    events.onerror = () => { document.body.dataset.stream = "retrying"; };
  }

  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const ref = button.dataset.reference;
    if (action === "destroy" &&
        !window.confirm("Destroy " + ref + "? Its node wipes the partition.")) return;
    button.disabled = true;
    try {
      const resp = await fetch("/action", {
        method: "POST",
        headers: {"Content-Type": "application/json", "X-Slapfed-Token": token},
        body: JSON.stringify({instance: button.dataset.instance, action: action}),
      });
      const body = await resp.json().catch(() => ({}));
      if (resp.ok) say(body.message || (ref + ": " + action));
      else say(ref + ": " + ((body.error && body.error.message) || resp.statusText), true);
    } catch (err) {
      say("the dashboard server does not answer: " + err, true);
    } finally {
      button.disabled = false;
    }
  });

  connect();
})();
