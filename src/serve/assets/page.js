// The test page: builds an input form from GET /v1/models and shows what POST /v1/predict answers.
// Every value from the server is set with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = $("key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function element(tag, props, children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  (children || []).forEach((c) => node.append(c));
  return node;
}

async function loadModels() {
  const response = await fetch("v1/models", { headers: headers() });
  if (response.status === 401) {
    $("form").hidden = false;
    status("This service needs an API key: type it below, then press Predict to load the models.", true);
    return;
  }
  if (!response.ok) {
    status("Could not list the models: HTTP " + response.status, true);
    return;
  }
  const body = await response.json();
  models = body.models;
  const select = $("model");
  select.replaceChildren(element("option", { value: "", textContent: "traffic split (/v1/predict)" }));
  models.forEach((m) =>
    select.append(element("option", { value: m.name, textContent: m.name + " (" + m.traffic_percent + "%)" })));
  buildInputs();
  $("form").hidden = false;
  status(models.length + " model(s) of task “" + (models[0] ? models[0].task : "?") + "” served.", false);
}

function currentModel() {
  const name = $("model").value;
  return models.find((m) => m.name === name) || models[0];
}

function buildInputs() {
  const model = currentModel();
  const box = $("inputs");
  box.replaceChildren();
  if (!model) return;
  if (model.input === "file") {
    box.append(element("label", {}, [element("span", { textContent: "File" }),
      element("input", { type: "file", id: "file" })]));
  } else if (model.fields.length > 0) {
    const row = (model.example.data && model.example.data.req_data && model.example.data.req_data[0]) || {};
    model.fields.forEach((f, i) => {
      const input = element("input", { type: "text", id: "field-" + i, value: row[f.name] || "" });
      input.dataset.name = f.name;
      if (f.choices && f.choices.length) {
        const list = element("datalist", { id: "choices-" + i });
        f.choices.forEach((c) => list.append(element("option", { value: c })));
        input.setAttribute("list", list.id);
        box.append(list);
      }
      box.append(element("label", {}, [element("span", {}, [f.name + " ", element("span", { className: "kind", textContent: f.kind })]), input]));
    });
  } else {
    box.append(element("textarea", { id: "json", value: JSON.stringify(model.example, null, 2) }));
  }
}

async function predict(event) {
  event.preventDefault();
  if (models.length === 0) { await loadModels(); return; }
  const model = currentModel();
  const url = $("model").value ? "v1/models/" + encodeURIComponent($("model").value) + "/predict" : "v1/predict";
  let init;
  if (model.input === "file") {
    const file = $("file").files[0];
    if (!file) { status("Choose a file first.", true); return; }
    const form = new FormData();
    form.append("file", file, file.name);
    init = { method: "POST", headers: headers(), body: form };
  } else {
    let body;
    if (model.fields.length > 0) {
      const row = {};
      document.querySelectorAll("#inputs input").forEach((i) => { row[i.dataset.name] = i.value; });
      body = { data: { req_data: [row] } };
    } else {
      try { body = JSON.parse($("json").value); } catch (e) { status("The input is not valid JSON: " + e.message, true); return; }
    }
    init = { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) };
  }
  status("Predicting…", false);
  const response = await fetch(url, init);
  const answer = await response.json().catch(() => ({}));
  $("response").hidden = false;
  $("response").textContent = JSON.stringify(answer, null, 2);
  if (!response.ok) {
    const e = answer.error || {};
    $("prediction").textContent = "";
    status("HTTP " + response.status + ": " + (e.field ? e.field + ": " : "") + (e.message || ""), true);
    return;
  }
  const served = response.headers.get("x-exeml-model") || model.name;
  $("prediction").textContent = "Prediction: " + predictedLabel(answer);
  status("Answered by model " + served + ".", false);
}

function predictedLabel(answer) {
  if (answer.predicted_label !== undefined) return answer.predicted_label;
  if (answer.detection_classes !== undefined) return answer.detection_classes.join(", ");
  const rows = answer.data && answer.data.resp_data;
  if (rows && rows.length) return String(rows[0].predict);
  return "?";
}

$("form").addEventListener("submit", predict);
$("model").addEventListener("change", buildInputs);
loadModels().catch((e) => status("Could not reach the service: " + e, true));
