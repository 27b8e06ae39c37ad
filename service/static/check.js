"use strict";
(function () {
// The check panel of GET /check: POST /v1/check {id, sha256}; a matching receipt is handed to the verify page
// below (its own inputs), which verifies it exactly as /verify does. Every mismatch gets the same answer.
const $ = (id) => document.getElementById(id);
const say = (state, text) => { const s = $("check-status"); s.dataset.state = state; s.textContent = text; };
const give = (input, files) => { const dt = new DataTransfer(); for (const f of files) dt.items.add(f); input.files = dt.files; };
const wait = (ms) => new Promise((r) => setTimeout(r, ms));

async function fileDigest() {
  for (let i = 0; i < 6000; i++) {  // the page hashes the file (with its progress bar); wait for its digest
    const node = $("file-digest");
    if (node) return node.textContent.trim();
    if (!$("check-file").files[0]) return null;
    await wait(50);
  }
  return null;
}

$("check-file").addEventListener("change", () => {
  const file = $("check-file").files[0];
  if (!file) return;
  $("check-sha").value = "";
  give($("file-input"), [file]);
  $("file-input").dispatchEvent(new Event("change"));
});
$("check-sha").addEventListener("input", () => {
  $("check-file").value = "";
  $("sha-input").value = $("check-sha").value;
  $("sha-input").dispatchEvent(new Event("input"));
});
const drop = $("check-file-drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files[0]) { give($("check-file"), [e.dataTransfer.files[0]]); $("check-file").dispatchEvent(new Event("change")); }
});

async function check() {
  const id = $("check-id").value.trim();
  if (!id) { say("error", "请填写证书编号 · type the certificate number"); $("check-id").focus(); return; }
  let sha = $("check-sha").value.trim().toLowerCase();
  if (!sha) {
    if (!$("check-file").files[0]) { say("error", "请选择原始文件或填写其 SHA-256 · choose the original file or type its SHA-256"); return; }
    say("busy", "正在本机计算 SHA-256 · hashing the file in this browser…");
    sha = await fileDigest();
    if (!sha) { say("error", "无法计算文件摘要 · could not hash the file"); return; }
  }
  say("busy", "正在核验 · checking…");
  let response;
  try {
    response = await fetch("v1/check", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ id, sha256: sha }),
      credentials: "omit", cache: "no-store",
    });
  } catch (e) { say("error", `无法连接服务 · cannot reach the service: ${e.message}`); return; }
  if (response.status === 200) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    say("found", "找到：编号与文件相符。回执已在下方本机验证，请看结论与每一步 · Found: the number and the file match. The receipt is verified below, in this browser: read the verdict and each step.");
    give($("receipt-input"), [new File([bytes], `${id}.receipt.json`, { type: "application/json" })]);
    $("receipt-input").dispatchEvent(new Event("change"));
    return;
  }
  let detail = "";
  try { detail = (await response.json()).detail || ""; } catch (e) { detail = ""; }
  if (response.status === 404) {
    say("notfound", "未找到：没有编号与该文件同时相符的已封存存证 · Not found: no sealed deposit has this number and this file.");
  } else if (response.status === 429) {
    const after = response.headers.get("Retry-After") || "?";
    say("error", `核验过于频繁，请 ${after} 秒后再试 · Too many checks from this address: retry in ${after} s.`);
  } else {
    say("error", `${response.status} ${detail}`);
  }
}
$("check-button").addEventListener("click", () => { check().catch((e) => say("error", `出错 · error: ${e.message}`)); });
$("check-id").addEventListener("keydown", (e) => { if (e.key === "Enter") $("check-button").click(); });
const given = new URLSearchParams(location.search).get("id");
if (given) $("check-id").value = given;
const save = $("save-link");
if (save) save.href = "verify";  // the offline copy to keep is the verify page (checking needs the service)
document.body.dataset.checkReady = "true";
})();
