// The order board's script: two EventSources (every order; the logged-in user's), a login form
// and an order form that post JSON. The server replays retained orders to a page that opens,
// and resumes a reconnecting EventSource from its Last-Event-ID, so nothing is shown twice.
"use strict";

const board = { orders: [], mine: [], errors: [], status: "connecting" };
window.board = board; // read by the tests

function show(list, order, id) {
  const item = document.createElement("li");
  item.dataset.id = id;
  item.textContent = `${order.quantity} × ${order.item} at ${order.price}` +
    (order.by ? ` (${order.by})` : "");
  list.querySelector(".empty")?.remove();
  list.prepend(item);
}

function follow(url, listId, seen) {
  const source = new EventSource(url);
  source.addEventListener("open", () => {
    board.status = "live";
    const status = document.getElementById("status");
    status.textContent = "live";
    status.className = "live";
  });
  source.addEventListener("order", (event) => {
    const order = JSON.parse(event.data);
    seen.push({ id: event.lastEventId, ...order });
    show(document.getElementById(listId), order, event.lastEventId);
  });
  source.addEventListener("reset", () => { seen.length = 0; }); // state lost: start over
  source.addEventListener("error", () => {
    // A 401 (not logged in) closes the source for good; anything else reconnects by itself.
    if (source.readyState === EventSource.CLOSED) board.status = "closed";
  });
  return source;
}

function userFromCookie() {
  const pair = document.cookie.split("; ").find((part) => part.startsWith("board_user="));
  return pair ? decodeURIComponent(pair.split("=")[1]) : null;
}

let mine = null;
function followMine() {
  const user = userFromCookie();
  document.getElementById("who").textContent = user ? `logged in as ${user}` : "";
  if (user && !mine) mine = follow("/orders/private", "mine", board.mine);
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const problems = document.getElementById("problems");
  problems.replaceChildren();
  if (!response.ok) {
    const error = await response.json();
    board.errors = error.errors || [{ location: "", message: error.message }];
    for (const problem of board.errors) {
      const item = document.createElement("li");
      item.textContent = `${problem.location}: ${problem.message}`;
      problems.append(item);
    }
  }
  return response;
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await post("/login", { user: document.getElementById("user").value });
  if (response.ok) followMine();
});

document.getElementById("order").addEventListener("submit", async (event) => {
  event.preventDefault();
  const number = (id) => {
    const text = document.getElementById(id).value;
    return text === "" ? null : Number(text);
  };
  await post("/orders", {
    item: document.getElementById("item").value,
    quantity: number("quantity"),
    price: number("price"),
  });
});

follow("/orders/stream", "orders", board.orders);
followMine();
