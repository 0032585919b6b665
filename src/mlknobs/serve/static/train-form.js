// mlknobs serve: the training panel's settings form. Every field comes from GET /api/train/settings
// (mlknobs.config, with the server's limits): no setting's name, default or range is written here.
"use strict";

window.mlknobs.trainForm = (() => {
  const { element } = window.mlknobs;
  // The fields' data-testid hooks are a public interface (browser tests, scripts): the setting's name
  // with dashes (train-hidden-size, train-epochs), the learning rate as train-lr, whatever flags
  // the server was given.
  const SHORT_IDS = { learning_rate: "lr" };
  const fields = [];             // {entry, input}: one per setting shown

  function testId(entry) {
    return `train-${SHORT_IDS[entry.name] || entry.name.replace(/_/g, "-")}`;
  }

  function rangeHint(entry) {
    if (entry.kind === "choice" || entry.kind === "boolean") return "";
    const show = (n) => (typeof n === "number" ? n.toLocaleString("en") : "");
    if (entry.min !== null && entry.max !== null && entry.max < 1e9) return `${show(entry.min)} – ${show(entry.max)}${entry.max_open ? " (excl.)" : ""}`;
    if (entry.min !== null) return `${entry.min_open ? ">" : "≥"} ${show(entry.min)}`;
    return "";
  }

  function field(entry) {
    const label = element("label", "field");
    const words = element("span", "words");
    words.append(element("span", "name", entry.name.replace(/_/g, " ")));
    if (entry.flag) words.append(" ", element("code", "flag", entry.flag));
    let input;
    if (entry.kind === "choice") {
      input = element("select");
      for (const choice of entry.choices) input.append(new Option(choice, choice, false, choice === entry.default));
    } else if (entry.kind === "boolean") {
      input = element("input");
      input.type = "checkbox";
      input.checked = entry.default;
      label.classList.add("check");
    } else {
      input = element("input");
      input.type = "number";
      input.step = entry.kind === "integer" ? "1" : "any";
      if (entry.min !== null && !entry.min_open) input.min = entry.min;
      if (entry.max !== null && !entry.max_open) input.max = entry.max;
      input.value = entry.default;
      input.inputMode = entry.kind === "integer" ? "numeric" : "decimal";
    }
    input.name = entry.name;
    input.dataset.testid = testId(entry);
    label.title = [entry.help, entry.limits ? `Allowed: ${entry.limits}.` : "",
                   entry.server_limit ? "This page trains at most that (it bounds the server's memory)." : ""]
      .filter(Boolean).join(" ");
    const hint = rangeHint(entry);
    label.append(words, input);
    if (hint) label.append(element("span", "range", hint));
    fields.push({ entry, input });
    return label;
  }

  function value({ entry, input }) {
    if (entry.kind === "boolean") return input.checked;
    if (entry.kind === "choice") return input.value;
    return input.value.trim() === "" ? null : Number(input.value);   // the server says what is wrong
  }

  // Only what differs from the defaults is sent, as a command line would: `augment` then fills in
  // the distortions that were not given, exactly as `train --augment` does.
  function settingsToSend() {
    const body = {};
    for (const f of fields) {
      const v = value(f);
      if (v !== f.entry.default) body[f.entry.name] = v;
    }
    return body;
  }

  // The fields of the settings the server named as bad get aria-invalid (and "more settings" opens).
  function markInvalid(names) {
    for (const { entry, input } of fields) {
      const bad = names.includes(entry.name);
      input.setAttribute("aria-invalid", bad ? "true" : "false");
      if (bad && !input.closest("#train-primary")) input.closest("details").open = true;
    }
  }

  // The settings' fields, the primary ones in `primary`, the others in `more`; false for a server
  // without the training panel.
  async function load(primary, more) {
    const response = await fetch("/api/train/settings");
    if (!response.ok) return false;
    const described = await response.json();
    for (const entry of [...described.settings, described.augment]) {
      (entry.primary ? primary : more).append(field(entry));
    }
    return true;
  }

  return { load, settingsToSend, markInvalid };
})();
