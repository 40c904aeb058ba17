// The dashboard page's own script (llm_eval_pipeline.tracking.dashboard): embeds the
// Vega-Lite spec with Vega's CSP-safe expression interpreter and fills the worst-examples
// table from the chosen models, day and search text. Text goes in with textContent only.
(function () {
  "use strict";
  const read = (id) => JSON.parse(document.getElementById(id).textContent);
  const spec = read("dashboard-spec");
  const config = read("dashboard-config");
  const table = config.table;
  const column = (name) => table.columns.indexOf(name);

  function format(value) {
    if (value === null || value === undefined) return "";
    if (typeof value !== "number") return String(value);
    const size = Math.abs(value);
    return size >= 100 ? value.toFixed(0) : size >= 1 ? value.toFixed(2) : value.toFixed(3);
  }

  function cell(tag, text, className) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    element.textContent = text;
    return element;
  }

  function header() {
    const row = document.createElement("tr");
    for (const name of table.columns) row.appendChild(cell("th", name));
    const head = document.querySelector("table.worst thead");
    head.replaceChildren(row);
  }

  function renderExamples(view) {
    const shown = new Set(
      config.models.filter((_, i) => Boolean(view.signal(config.modelSignals[i])))
    );
    const day = view.signal(config.daySignal);
    const needle = String(view.signal(config.searchSignal) || "").trim().toLowerCase();
    const modelAt = column(config.modelColumn);
    const dayAt = column(config.dayColumn);
    const textAt = config.textColumns.map(column).filter((i) => i >= 0);
    const body = document.getElementById(config.examples);
    const rows = [];
    let ofDay = 0;
    for (const values of table.rows) {
      if (values[dayAt] !== day || !shown.has(values[modelAt])) continue;
      ofDay += 1;
      const text = textAt.map((i) => String(values[i] ?? "").toLowerCase());
      if (needle && !text.some((t) => t.includes(needle))) continue;
      const row = document.createElement("tr");
      values.forEach((value, i) => {
        if (textAt.includes(i) && i !== column(config.textColumns[0])) {
          const td = document.createElement("td");
          td.appendChild(cell("div", format(value), "text"));
          row.appendChild(td);
        } else {
          row.appendChild(cell("td", format(value), typeof value === "number" ? "num" : ""));
        }
      });
      rows.push(row);
    }
    body.replaceChildren(...rows);
    document.getElementById(config.count).textContent =
      `${rows.length} of ${ofDay} worst examples on ${day} (up to ${config.n} per model).`;
  }

  const options = { actions: false, ast: true, mode: "vega-lite", renderer: "svg" };
  vegaEmbed("#" + config.charts, spec, options)
    .then((result) => {
      const view = result.view;
      window.__view = view;
      header();
      const update = () => renderExamples(view);
      for (const name of [...config.modelSignals, config.daySignal, config.searchSignal]) {
        view.addSignalListener(name, update);
      }
      update();
      window.__dashboardReady = true;
    })
    .catch((error) => {
      console.error(error);
      document.getElementById(config.charts).textContent = "The charts failed: " + error;
    });
})();
