// Files: list, upload with a progress bar (through /v1/uploads in parts for big files), a preview
// of a file's first lines, and the line-numbered validation error of a refused file.

import { del, enc, get, post, postForm, qs, raw } from "./api.js";
import { clear, errorBox, h, num, status, table, time } from "./dom.js";

const DIRECT_MAX = 4 * 1024 * 1024; // larger files go through /v1/uploads
const PART_BYTES = 4 * 1024 * 1024;
const PREVIEW_LINES = 20;
const PREVIEW_BYTES = 64 * 1024;
const PURPOSES = ["fine-tune", "evals", "batch", "user_data", "assistants", "vision"];

async function upload(file, purpose, onProgress) {
  if (file.size <= DIRECT_MAX) {
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    return postForm("/files", form, onProgress);
  }
  const created = await post("/uploads", {
    bytes: file.size, filename: file.name, purpose,
    mime_type: file.name.endsWith(".jsonl") ? "text/jsonl" : file.type || "application/octet-stream",
  });
  const partIds = [];
  try {
    for (let start = 0; start < file.size; start += PART_BYTES) {
      const form = new FormData();
      form.append("data", file.slice(start, start + PART_BYTES), file.name);
      const part = await postForm(`/uploads/${enc(created.id)}/parts`, form, (loaded) => onProgress(start + loaded, file.size));
      partIds.push(part.id);
    }
    onProgress(file.size, file.size);
    return (await post(`/uploads/${enc(created.id)}/complete`, { part_ids: partIds })).file;
  } catch (err) {
    post(`/uploads/${enc(created.id)}/cancel`).catch(() => {});
    throw err;
  }
}

function uploadForm(onDone) {
  const input = h("input", { type: "file", id: "upload-file", name: "file" });
  const purpose = h("select", { id: "upload-purpose" }, PURPOSES.map((p) => h("option", { value: p }, p)));
  const bar = h("progress", { id: "upload-progress", max: 100, value: 0 });
  const label = h("span", { id: "upload-label", class: "muted" });
  const message = h("div", { id: "upload-message" });
  const form = h("form", { class: "inline", id: "upload-form" }, input, purpose, h("button", { type: "submit" }, "Upload"), bar, label);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear(message);
    const file = input.files[0];
    if (!file) return;
    bar.value = 0;
    try {
      const stored = await upload(file, purpose.value, (loaded, total) => {
        bar.value = Math.round((100 * loaded) / total);
        label.textContent = `${num(loaded)} / ${num(total)} bytes`;
      });
      bar.value = 100;
      message.append(h("p", { class: "ok" }, "Stored as ", h("code", {}, stored.id), "."));
      onDone();
    } catch (err) {
      message.append(errorBox(err));
    }
  });
  return [h("h2", {}, "Upload"), form, message];
}

export async function list(main) {
  const listing = h("div");
  const draw = async () => {
    const page = await get(`/files${qs({ limit: 200 })}`);
    clear(listing).append(table([
      { title: "File", cell: (f) => h("a", { href: `#/files/${enc(f.id)}` }, f.id) },
      { title: "Name", cell: (f) => f.filename },
      { title: "Purpose", cell: (f) => f.purpose },
      { title: "Bytes", num: true, cell: (f) => num(f.bytes) },
      { title: "Status", cell: (f) => status(f.status) },
      { title: "Created", cell: (f) => time(f.created_at) },
    ], page.data, (f) => ({ dataset: { file: f.id } })));
  };
  main.append(h("h1", {}, "Files"), ...uploadForm(() => draw()), h("h2", {}, "Stored"), listing);
  await draw();
}

// The first lines of the file, read from its content stream and then cut off.
async function preview(id) {
  const reader = (await raw(`/files/${enc(id)}/content`)).body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (text.length < PREVIEW_BYTES && text.split("\n").length <= PREVIEW_LINES) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  reader.cancel().catch(() => {});
  return text.split("\n").slice(0, PREVIEW_LINES).map((line, i) => `${String(i + 1).padStart(4)}  ${line}`).join("\n");
}

export async function show(main, { params: [id] }) {
  const file = await get(`/files/${enc(id)}`);
  const remove = h("button", { type: "button", class: "danger", id: "file-delete" }, "Delete");
  const message = h("div");
  remove.addEventListener("click", async () => {
    try { await del(`/files/${enc(id)}`); location.hash = "#/files"; } catch (err) { message.append(errorBox(err)); }
  });
  main.append(h("h1", {}, "File ", h("code", {}, file.id), " ", status(file.status)),
    table([{ title: "Field", cell: (r) => r[0] }, { title: "Value", cell: (r) => r[1] }], [
      ["Name", file.filename], ["Purpose", file.purpose], ["Bytes", num(file.bytes)], ["Created", time(file.created_at)],
      ["Expires", time(file.expires_at)],
    ]), h("p", {}, remove), message);
  if (file.status_details) main.append(h("h2", {}, "Validation"), h("div", { class: "error", id: "file-errors" }, file.status_details));
  main.append(h("h2", {}, `First ${PREVIEW_LINES} lines`));
  const pre = h("pre", { id: "file-preview" });
  main.append(pre);
  try { pre.textContent = await preview(id); } catch (err) { pre.replaceWith(errorBox(err)); }
}
