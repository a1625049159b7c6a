// The console's one script: it makes the live parts live and nothing else. Every page reads and
// every form works without it.
"use strict";

// A region that follows a saga: the server sends the region again (event "saga") whenever the
// read side holds more of the order, and "end" once the saga has nothing more to hear.
function follow(region) {
  const source = new EventSource(region.dataset.live);
  source.addEventListener("saga", (event) => {
    region.innerHTML = event.data;
    region.dataset.updated = String(Date.now());
  });
  source.addEventListener("end", () => {
    source.close();
    region.dataset.ended = "true";
  });
}

// A region refreshed every data-every milliseconds from data-refresh.
function refresh(region) {
  const every = Number(region.dataset.every || 2000);
  const tick = async () => {
    try {
      const answer = await fetch(region.dataset.refresh, { headers: { accept: "text/html" } });
      if (answer.ok) region.innerHTML = await answer.text();
    } catch (_) {
      // The next tick tries again.
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

// A part loaded once, after the page: the trace's spans come from Jaeger, which may be slow.
async function load(region) {
  try {
    const answer = await fetch(region.dataset.load);
    region.innerHTML = await answer.text();
  } catch (error) {
    region.textContent = "Could not load: " + error;
  }
}

// The time slider: the order's state as of the event the slider points at.
function slider(input) {
  const moments = JSON.parse(input.dataset.moments);
  const label = document.getElementById("as-of-text");
  const state = document.getElementById("state");
  let asked = 0;
  input.addEventListener("input", async () => {
    const index = Number(input.value);
    const [at, name] = moments[index];
    const text = `${index + 1} of ${moments.length}: ${name} at ${at}`;
    input.setAttribute("aria-valuetext", text);
    label.textContent = text;
    const ticket = ++asked;
    const answer = await fetch(`${input.dataset.state}?as_of=${encodeURIComponent(at)}`);
    if (answer.ok && ticket === asked) {
      state.innerHTML = await answer.text();
      state.dataset.asOf = at;
    }
  });
}

document.querySelectorAll("[data-live]").forEach(follow);
document.querySelectorAll("[data-refresh]").forEach(refresh);
document.querySelectorAll("[data-load]").forEach(load);
document.querySelectorAll("input[data-moments]").forEach(slider);
