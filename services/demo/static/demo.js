/* latentwire demo: draw (or drop) a digit, send it to the sender's /encode, the code to the
 * receiver's /decode, and show both sides. Plain JavaScript, no build step, no external resources.
 *
 * The services' base URLs come from the page's query parameters `sender` and `receiver`
 * (default /sender and /receiver: the gateway's layout, which serves this page at /):
 *   demo/?sender=http://127.0.0.1:8001&receiver=http://127.0.0.1:8002
 *
 * For tests: #result carries data-state (idle, busy, done, error) and data-count (results and
 * errors shown so far); every result element has a stable id.
 */
"use strict";

(() => {
  const params = new URLSearchParams(window.location.search);
  const SENDER = serviceBase("sender", "/sender");
  const RECEIVER = serviceBase("receiver", "/receiver");
  const ENCODE_DELAY_MS = 400; // after the pen lifts: a digit of several strokes is sent once
  const PEN_WIDTH = 22; // on the 280-pixel canvas: MNIST's strokes are ~2 pixels of 28
  const EXAMPLES = [
    // strokes of points in 0…1 canvas coordinates: a 7, a 4, a 1, a 2
    [[[0.26, 0.22], [0.74, 0.22], [0.46, 0.82]], [[0.4, 0.52], [0.66, 0.52]]],
    [[[0.58, 0.18], [0.28, 0.6], [0.74, 0.6]], [[0.6, 0.36], [0.6, 0.84]]],
    [[[0.44, 0.26], [0.56, 0.17], [0.56, 0.84]]],
    [[[0.3, 0.32], [0.42, 0.2], [0.6, 0.2], [0.7, 0.33], [0.6, 0.5], [0.3, 0.8], [0.74, 0.8]]],
  ];

  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const dropZone = $("drop-zone");
  const fileInput = $("file");
  const quality = $("quality");
  const apiKey = $("api-key");
  const result = $("result");
  const status = $("status");
  const errorBox = $("error");
  const inputImage = $("encoded-input");
  const reconstruction = $("reconstruction");

  let source = null; // what is encoded: {kind: "drawing"} or {kind: "file", blob, name}
  let stroke = null; // the pointer drawing now: {id, x, y}
  let encodeTimer = 0;
  let run = 0; // each encoding's number; answers of an older one are dropped
  let inFlight = null; // its AbortController
  let exampleIndex = 0;
  let levelsLoaded = false; // the quality list holds the sender's levels
  const objectUrls = new Map(); // img → its blob: URL, revoked when replaced

  // ------------------------------------------------------------------ services

  function serviceBase(name, fallback) {
    const given = (params.get(name) || "").trim();
    return (given || fallback).replace(/\/+$/, "");
  }

  function serviceUrl(base, path) {
    return new URL(`${base}${path}`, window.location.href);
  }

  class ServiceError extends Error {
    constructor(message, hint, status = 0, code = "") {
      super(message);
      this.hint = hint;
      this.status = status;
      this.code = code;
    }
  }

  /** The request's headers; the API key only for a service on this page's own origin, so that
   * a link with ?sender= or ?receiver= pointing elsewhere cannot collect a typed key. */
  function headers(url, extra = {}) {
    const key = apiKey.value.trim();
    return key && url.origin === window.location.origin ? { ...extra, "X-API-Key": key } : extra;
  }

  /** fetch, turning every failure into a ServiceError with the service's detail and hint. */
  async function call(service, url, init) {
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      const setting = `LATENTWIRE_${service.toUpperCase()}_CORS_ORIGINS`;
      throw new ServiceError(
        `Could not reach the ${service} at ${url.origin}${url.pathname} (${error.message}).`,
        `Is it running, and does it allow requests from this page's origin ${window.location.origin}? ` +
          `A ${service} on another origin needs ${setting}=${window.location.origin}.`,
      );
    }
    if (response.ok) return response;
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (body && typeof body.detail === "string") {
      throw new ServiceError(
        `The ${service} refused (${response.status} ${body.error || "error"}): ${body.detail}`,
        typeof body.hint === "string" ? body.hint : "",
        response.status,
        body.error || "",
      );
    }
    throw new ServiceError(
      `The ${service} answered ${response.status} ${response.statusText} at ${url.pathname}.`,
      `Is ${url.origin}${url.pathname} the latentwire ${service}? ` +
        "Give its base URL as this page's query parameter " +
        `?${service}=URL (now ${service === "sender" ? SENDER : RECEIVER}).`,
      response.status,
    );
  }

  // ------------------------------------------------------------------ levels

  async function loadLevels() {
    const url = serviceUrl(SENDER, "/v1/model");
    const chosen = levelsLoaded ? quality.value : null; // kept when the levels are asked again
    try {
      const info = await (await call("sender", url, { headers: headers(url) })).json();
      const levels = info.levels.filter((level) => !level.denoise).sort((a, b) => a.quality - b.quality);
      const keep = levels.some((level) => String(level.quality) === chosen);
      quality.replaceChildren(
        ...levels.map((level) => {
          const option = document.createElement("option");
          option.value = String(level.quality);
          option.textContent = levelText(level, info.default_quality);
          option.selected = keep ? option.value === chosen : level.quality === info.default_quality;
          return option;
        }),
      );
      if (levels.length === 0) quality.append(new Option("the sender's default", ""));
      levelsLoaded = true;
      clearError();
      return true;
    } catch (error) {
      const where = `${url.origin}${url.pathname}`;
      const reason = error instanceof ServiceError ? error.message : String(error.message || error);
      let advice;
      if (error.status === 401) {
        advice = "Type one of the services' API keys into the API key field.";
      } else if (error.status === 0 || error.status === 404 || error.status === 405 || !error.code) {
        // most likely the wrong base URL: say how to give another
        advice =
          "Where the services are not at /sender and /receiver of this page's server, open the page " +
          "with ?sender=URL&receiver=URL (their base URLs).";
      }
      const hint = [error.hint, advice].filter(Boolean).join(" ");
      showError(new ServiceError(`The quality levels could not be loaded from ${where}. ${reason}`, hint));
      return false;
    }
  }

  function levelText(level, defaultQuality) {
    const parts = [];
    if (typeof level.code_bytes === "number") parts.push(`~${formatNumber(level.code_bytes)} bytes`);
    if (typeof level.psnr === "number") parts.push(`${level.psnr.toFixed(1)} dB`);
    if (level.quality === 0) parts.push("the tutorial's 8-bit model");
    if (level.quality === defaultQuality) parts.push("default");
    return `${level.quality}${parts.length ? `: ${parts.join(", ")}` : ""}`;
  }

  function formatNumber(value) {
    return value >= 100 ? String(Math.round(value)) : value.toFixed(1);
  }

  // ------------------------------------------------------------------ encoding and decoding

  async function encode() {
    if (!source) return;
    clearTimeout(encodeTimer);
    const number = ++run;
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    setState("busy", "Encoding…");
    clearError();
    let coded = false; // whether this run's code is shown (a receiver's refusal keeps it)
    try {
      const blob = source.kind === "file" ? source.blob : await canvasBlob();
      const name = source.kind === "file" ? source.name : "drawing.png";
      const url = serviceUrl(SENDER, "/encode");
      if (quality.value !== "") url.searchParams.set("quality", quality.value);
      url.searchParams.set("input", "true");
      const form = new FormData();
      form.append("file", blob, name || "image");
      const encoded = await (
        await call("sender", url, { method: "POST", body: form, headers: headers(url), signal: controller.signal })
      ).json();
      if (number !== run) return;
      const code = fromBase64url(encoded.code);
      const input = encoded.input ? fromBase64url(encoded.input) : null;
      showCode(encoded, code, input);
      coded = true;
      await showImage(inputImage, input ? new Blob([input], { type: "image/png" }) : null);
      if (number !== run) return;

      setState("busy", "Decoding…");
      const decodeUrl = serviceUrl(RECEIVER, "/decode");
      const decoded = await call("receiver", decodeUrl, {
        method: "POST",
        body: code,
        headers: headers(decodeUrl, { "Content-Type": "application/octet-stream" }),
        signal: controller.signal,
      });
      const png = await decoded.blob();
      if (number !== run) return;
      await showImage(reconstruction, png);
      if (number !== run) return;
      setState(
        "done",
        `Sent ${code.length} bytes at level ${encoded.quality}; the receiver rebuilt the digit from them.`,
      );
    } catch (error) {
      if (number !== run || error.name === "AbortError") return;
      if (!coded) clearResult(); // never an older digit's code beside this one's error
      showError(error, "Encoding failed");
      setState("error", "Something went wrong: see the message above.");
    } finally {
      if (inFlight === controller) inFlight = null;
    }
  }

  function scheduleEncode(delay = ENCODE_DELAY_MS) {
    clearTimeout(encodeTimer);
    encodeTimer = setTimeout(encode, delay);
  }

  function canvasBlob() {
    return new Promise((resolve, reject) => {
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the drawing could not be read"))), "image/png");
    });
  }

  function fromBase64url(text) {
    const standard = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(standard + "=".repeat((4 - (standard.length % 4)) % 4));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
  }

  // ------------------------------------------------------------------ showing

  function showCode(encoded, code, input) {
    $("code-bytes").textContent = String(code.length);
    $("code-hex").textContent = toHex(code);
    $("code-b64").textContent = encoded.code;
    $("code-quality").textContent = String(encoded.quality);
    $("png-bytes").textContent = input ? String(input.length) : "–";
    $("ratio").textContent = input ? `${(input.length / code.length).toFixed(1)}×` : "–";
    forgetImage(reconstruction);
  }

  function forgetImage(img) {
    const old = objectUrls.get(img);
    if (old) URL.revokeObjectURL(old);
    objectUrls.delete(img);
    img.removeAttribute("src");
  }

  async function showImage(img, blob) {
    forgetImage(img);
    if (!blob) return;
    const url = URL.createObjectURL(blob);
    objectUrls.set(img, url);
    img.src = url;
    try {
      await img.decode();
    } catch {
      throw new ServiceError("The image that came back could not be shown.", "It is not a PNG the browser can read.");
    }
  }

  function clearResult() {
    for (const id of ["code-bytes", "code-hex", "code-b64", "code-quality", "png-bytes", "ratio"]) {
      $(id).textContent = "–";
    }
    forgetImage(inputImage);
    forgetImage(reconstruction);
  }

  function setState(state, message) {
    result.dataset.state = state;
    result.setAttribute("aria-busy", state === "busy" ? "true" : "false");
    if (state === "done" || state === "error") result.dataset.count = String(Number(result.dataset.count) + 1);
    status.textContent = message;
  }

  function showError(error, context) {
    const message = error instanceof ServiceError ? error.message : `${context}: ${error.message || error}`;
    const title = document.createElement("p");
    title.className = "error-detail";
    title.textContent = message;
    errorBox.replaceChildren(title);
    if (error.hint) {
      const hint = document.createElement("p");
      hint.className = "error-hint";
      hint.textContent = error.hint;
      errorBox.append(hint);
    }
  }

  function clearError() {
    errorBox.replaceChildren();
  }

  // ------------------------------------------------------------------ drawing

  function resetCanvas() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = PEN_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  function canvasPoint(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  function dot(p) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, PEN_WIDTH / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function line(from, to) {
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }

  function startDrawing() {
    clearTimeout(encodeTimer);
    if (!source || source.kind !== "drawing") {
      resetCanvas(); // a fresh drawing after a file (or at the start)
      source = { kind: "drawing" };
    }
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    startDrawing();
    canvas.setPointerCapture(event.pointerId);
    const p = canvasPoint(event);
    stroke = { id: event.pointerId, ...p };
    dot(p);
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!stroke || event.pointerId !== stroke.id) return;
    const events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) {
      const p = canvasPoint(e);
      line(stroke, p);
      stroke.x = p.x;
      stroke.y = p.y;
    }
  });

  function endStroke(event) {
    if (!stroke || event.pointerId !== stroke.id) return;
    stroke = null;
    scheduleEncode();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  function drawExample() {
    const strokes = EXAMPLES[exampleIndex % EXAMPLES.length];
    exampleIndex += 1;
    resetCanvas();
    source = { kind: "drawing" };
    for (const points of strokes) {
      const scaled = points.map(([x, y]) => ({ x: x * canvas.width, y: y * canvas.height }));
      dot(scaled[0]);
      for (let i = 1; i < scaled.length; i += 1) line(scaled[i - 1], scaled[i]);
    }
    encode();
  }

  function clearAll() {
    clearTimeout(encodeTimer);
    run += 1;
    if (inFlight) inFlight.abort();
    source = null;
    stroke = null;
    resetCanvas();
    clearResult();
    clearError();
    setState("idle", "Cleared. Draw a digit to start.");
  }

  // ------------------------------------------------------------------ files

  async function useFile(file) {
    if (!file) return;
    source = { kind: "file", blob: file, name: file.name };
    resetCanvas();
    try {
      // a preview on the canvas, fitted and centered; the file itself is what is sent
      const bitmap = await createImageBitmap(file);
      const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
      const w = bitmap.width * scale;
      const h = bitmap.height * scale;
      ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
      bitmap.close();
    } catch {
      // not an image this browser reads: the sender says what is wrong with it
    }
    encode();
  }

  fileInput.addEventListener("change", () => {
    const [file] = fileInput.files;
    useFile(file);
    fileInput.value = ""; // choosing the same file again is a change again
  });

  let dragDepth = 0;
  document.addEventListener("dragenter", (event) => {
    if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
    dragDepth += 1;
    dropZone.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) dropZone.classList.remove("dragging");
  });
  document.addEventListener("dragover", (event) => {
    event.preventDefault(); // a file dropped anywhere on the page is taken, not opened
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    dropZone.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) useFile(file);
  });

  // ------------------------------------------------------------------ wiring

  $("clear").addEventListener("click", clearAll);
  $("example").addEventListener("click", drawExample);
  quality.addEventListener("change", () => {
    if (source) encode();
  });
  apiKey.addEventListener("change", async () => {
    // a key typed after a 401: ask for the levels again, and send the digit again
    if (!levelsLoaded && !(await loadLevels())) return;
    if (source) encode();
  });
  $("sender-url").textContent = serviceUrl(SENDER, "").href;
  $("receiver-url").textContent = serviceUrl(RECEIVER, "").href;

  resetCanvas();
  loadLevels().finally(() => {
    document.documentElement.dataset.ready = "true";
  });
})();
