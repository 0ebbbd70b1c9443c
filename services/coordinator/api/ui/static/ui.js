// seal-lab UI: a run page's live progress from the API's server-sent events (GET /v1/runs/{id}/events).
// `summary` events carry the run's progress line, `run` events its log; the stream ends when the run does.
"use strict";
(function () {
  const FINISHED = ["succeeded", "completed_with_errors", "failed", "cancelled"];
  function start(section) {
    const field = (name) => section.querySelector(`[data-field="${name}"]`);
    const initial = section.dataset.status;
    if (FINISHED.includes(initial)) return;
    const source = new EventSource(section.dataset.events, { withCredentials: true });
    source.addEventListener("summary", (message) => {
      const s = JSON.parse(message.data);
      const status = field("status");
      status.textContent = s.status;
      status.className = `status s-${s.status}`;
      const percent = s.jobs_total ? Math.min(100, Math.round((100 * s.jobs_done) / s.jobs_total)) : 0;
      field("bar").value = percent;
      field("bar").textContent = `${percent}%`;
      field("jobs").textContent = `${s.jobs_done}/${s.jobs_total}`;
      field("current").textContent = s.current || "—";
      const round = field("round"); // none on a continual run's page: it has no rounds
      if (round) round.textContent = `${s.round}/${s.rounds}`;
      field("retries").textContent = s.retries;
      field("failed").textContent = s.jobs_failed;
      field("error").textContent = s.error;
      field("error").hidden = !s.error;
      if (FINISHED.includes(s.status)) {
        source.close();
        field("note").textContent = `The run has ${s.status.replace(/_/g, " ")}; loading its results…`;
        setTimeout(() => window.location.reload(), 800);
      }
    });
    source.addEventListener("run", (message) => {
      const e = JSON.parse(message.data);
      const item = document.createElement("li");
      item.className = `ev-${e.kind}`;
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = e.kind;
      item.append(kind, ` ${e.message}`);
      const list = field("events");
      if (!list.querySelector(`[data-seq="${e.seq}"]`)) {
        item.dataset.seq = e.seq;
        item.value = e.seq;
        list.prepend(item);
      }
    });
    source.onerror = () => {
      field("note").textContent = "Connection to the event stream lost; retrying…";
    };
    source.onopen = () => {
      field("note").textContent = "Live: following the run's events.";
    };
  }
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("section[data-events]").forEach(start);
  });
})();
